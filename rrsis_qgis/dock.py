"""The dock widget: choose a raster, type an expression, run, watch progress, get polygons.

The dock gathers the user's choices into a :class:`~rrsis_qgis.task.SegmentationRequest` and
hands it to a :class:`~rrsis_qgis.task.SegmentTask`, which runs the library in a worker process
(never in QGIS's). Its top panel says which Python runs the worker and what that Python has
(a quick ``--probe`` of the worker); when nothing usable is there it offers *Install now*, which
creates an environment under the QGIS profile, and installs nothing otherwise.
"""

from __future__ import annotations

import os
from typing import List, Optional

from qgis.core import (
    QgsApplication,
    QgsCoordinateTransform,
    QgsMapLayerProxyModel,
    QgsProject,
    QgsRasterLayer,
    QgsSettings,
    QgsTask,
    QgsUnitTypes,
)
from qgis.gui import QgsCollapsibleGroupBox, QgsDockWidget, QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt.QtCore import Qt, QTimer, pyqtSignal
from qgis.PyQt.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QScrollArea,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from rrsis_geo.errors import InputError
from rrsis_geo.options import DOCK, PredictOptions, describe, spec

from . import checkpoints, deps, devices
from .deps_panel import DependencyPanel, usable
from .devices import WorkerProbe
from .hints import ExplainService, hint_lines
from .expressions import (
    EXPRESSION_SEPARATOR,
    SETTINGS_PREFIX,
    ExpressionCompleter,
    load_history,
    remember_expressions,
    split_expressions,
)
from .extent import CANVAS, DRAWN, WHOLE_LAYER, ExtentPicker, extent_for
from .layers import LayerInputError, file_source, parse_bands, plan_raster_input
from .task import Outcome, SegmentationRequest, SegmentTask
from .warm_worker import WorkerPool
from .worker_panel import WorkerPanel, idle_minutes


#: the hint waits this long after the last key before asking the worker
HINT_DELAY_MS = 1000

#: the control of each option the dock offers (front end "dock" of :mod:`rrsis_geo.options`);
#: a test fails when the schema gains a dock option without one
DOCK_CONTROLS = {
    "checkpoint": "model_widget", "device": "device_combo", "output": "output_widget",
    "overwrite": "overwrite_check", "tile_size": "tile_spin", "overlap": "overlap_spin",
    "threshold": "threshold_slider", "bands": "bands_edit", "bbox": "extent_combo",
    "force_gsd": "force_gsd_check", "on_read_error": "read_error_combo", "tta": "tta_check",
}


def _choices(name: str) -> QComboBox:
    """A combo box of an option's choices, as the schema lists and labels them."""
    combo = QComboBox()
    option = spec(name)
    for value in option.choices:
        combo.addItem(option.choice_label(value), value)
    combo.setCurrentIndex(combo.findData(option.default))
    combo.setToolTip(option.help[:1].upper() + option.help[1:])
    _compact(combo)
    return combo


def _compact(combo: QComboBox) -> None:
    """Let a combo box shrink with a narrow dock instead of widening it to its longest item."""
    combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(8)


class SegmentDock(QgsDockWidget):
    """Referring segmentation dock (see module docstring)."""

    run_finished = pyqtSignal(object)  # Outcome of the last run

    def __init__(self, iface, parent: Optional[QWidget] = None, project: Optional[QgsProject] = None) -> None:
        super().__init__("Referring segmentation", parent or iface.mainWindow())
        self.setObjectName("RRSISDock")
        self.iface = iface
        self.project = project or QgsProject.instance()
        self.canvas = iface.mapCanvas()
        self.task: Optional[SegmentTask] = None
        self.last_outcome: Optional[Outcome] = None
        self.card: Optional[checkpoints.ModelCard] = None
        self.gpu_available = False
        self.python_choice = deps.PythonChoice(None, "none")
        self.worker_hello: Optional[dict] = None  # the probe's answer for python_choice
        self.picker = ExtentPicker(self.canvas, self)
        self.probe = WorkerProbe(self)
        self.probe.result.connect(self._probed)
        # one warm worker per (interpreter, checkpoint, device) for runs and hints alike
        self.workers = WorkerPool(idle_s=60.0 * idle_minutes())
        self.hints = ExplainService(self, self.workers)
        self.hint_timer = QTimer(self)
        self.hint_timer.setSingleShot(True)
        self.hint_timer.setInterval(HINT_DELAY_MS)
        self._build()
        self._connect()
        self.check_dependencies()
        self.use_active_layer()
        self.refresh_model()
        self._update_state()

    # ---- layout --------------------------------------------------------------------------
    def _build(self) -> None:
        body = QWidget()
        outer = QVBoxLayout(body)
        outer.setContentsMargins(6, 6, 6, 6)

        self.deps_panel = DependencyPanel()
        outer.addWidget(self.deps_panel)

        self.form_widget = QWidget()
        form = QFormLayout(self.form_widget)
        form.setContentsMargins(0, 0, 0, 0)
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        form.setRowWrapPolicy(QFormLayout.WrapLongRows)  # labels go above fields in a narrow dock

        self.layer_combo = QgsMapLayerComboBox()
        self.layer_combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
        self.layer_combo.setAllowEmptyLayer(False)
        _compact(self.layer_combo)
        form.addRow("Raster layer", self.layer_combo)

        self.expression_edit = QLineEdit()
        self.expression_edit.setPlaceholderText("e.g. building along the road")
        self.expression_edit.setToolTip(f"What to segment, in English. Several expressions: separate them with '{EXPRESSION_SEPARATOR}'.")
        self.completer = ExpressionCompleter(self.expression_edit)
        self.completer.history = load_history()
        self.completer.refresh()
        form.addRow("Expression", self.expression_edit)
        self.hint_label = QLabel()
        self.hint_label.setWordWrap(True)
        self.hint_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.hint_label.setStyleSheet("font-style: italic;")
        self.hint_label.setToolTip("How the model reads what you typed, and the scale it will run at")
        self.hint_label.hide()
        form.addRow("", self.hint_label)

        self.model_widget = QgsFileWidget()
        self.model_widget.setStorageMode(QgsFileWidget.GetDirectory)
        self.model_widget.setDialogTitle("Checkpoint folder (config.json + model.safetensors)")
        self.model_widget.lineEdit().setPlaceholderText("Default model")
        self.model_widget.setFilePath(QgsSettings().value(SETTINGS_PREFIX + "checkpoint", "", type=str))
        form.addRow("Model", self.model_widget)
        self.model_label = QLabel()
        self.model_label.setWordWrap(True)
        form.addRow("", self.model_label)

        self.device_combo = _choices("device")
        self._set_gpu_available(False)
        form.addRow("Device", self.device_combo)

        threshold_row = QHBoxLayout()
        self.threshold_slider = QSlider(Qt.Horizontal)
        self.threshold_slider.setRange(1, 99)  # the library needs 0 < threshold < 1
        self.threshold_slider.setValue(50)
        self.threshold_label = QLabel("0.50")
        self.threshold_label.setMinimumWidth(32)
        threshold_row.addWidget(self.threshold_slider, 1)
        threshold_row.addWidget(self.threshold_label)
        form.addRow("Threshold", threshold_row)

        extent_row = QHBoxLayout()
        self.extent_combo = QComboBox()
        self.extent_combo.addItem("Whole layer", WHOLE_LAYER)
        self.extent_combo.addItem("Current map canvas extent", CANVAS)
        self.extent_combo.addItem("Drawn rectangle", DRAWN)
        _compact(self.extent_combo)
        self.draw_button = QPushButton("Draw")
        self.draw_button.setToolTip("Drag a rectangle on the map")
        extent_row.addWidget(self.extent_combo, 1)
        extent_row.addWidget(self.draw_button)
        form.addRow("Extent", extent_row)

        output_box = QWidget()
        output_layout = QVBoxLayout(output_box)
        output_layout.setContentsMargins(0, 0, 0, 0)
        self.temporary_radio = QRadioButton("Temporary layers")
        self.file_radio = QRadioButton("GeoPackage")
        self.output_group = QButtonGroup(self)
        self.output_group.addButton(self.temporary_radio)
        self.output_group.addButton(self.file_radio)
        self.temporary_radio.setChecked(True)
        self.output_widget = QgsFileWidget()
        self.output_widget.setStorageMode(QgsFileWidget.SaveFile)
        self.output_widget.setFilter("GeoPackage (*.gpkg)")
        self.overwrite_check = QCheckBox("Replace if it exists")
        radios = QHBoxLayout()
        radios.addWidget(self.temporary_radio)
        radios.addWidget(self.file_radio)
        radios.addStretch(1)
        output_layout.addLayout(radios)
        output_layout.addWidget(self.output_widget)
        output_layout.addWidget(self.overwrite_check)
        form.addRow("Output", output_box)

        self.advanced = QgsCollapsibleGroupBox("Advanced")
        self.advanced.setCollapsed(True)
        advanced_form = QFormLayout(self.advanced)
        advanced_form.setRowWrapPolicy(QFormLayout.WrapLongRows)
        self.tile_spin = QSpinBox()
        self.tile_spin.setRange(0, 4096)
        self.tile_spin.setSingleStep(64)
        self.tile_spin.setSpecialValueText("model default")
        self.tile_spin.setSuffix(" px")
        advanced_form.addRow("Tile size", self.tile_spin)
        overlap = spec("overlap")
        self.overlap_spin = QDoubleSpinBox()
        self.overlap_spin.setSingleStep(0.05)
        self.overlap_spin.setRange(overlap.low, overlap.high - (0.05 if overlap.high_open else 0.0))
        self.overlap_spin.setValue(overlap.default)
        advanced_form.addRow("Tile overlap", self.overlap_spin)
        self.bands_edit = QLineEdit()
        self.bands_edit.setPlaceholderText("automatic (RGB)")
        self.bands_edit.setToolTip(
            "Bands to read as red, green, blue, e.g. 4,3,2; a single-band layer needs 1,1,1. "
            "Empty: the first three bands, or the RGB ones by colour interpretation."
        )
        advanced_form.addRow("Bands", self.bands_edit)
        self.resolution_spin = QDoubleSpinBox()
        self.resolution_spin.setRange(0.0, 1e7)
        self.resolution_spin.setDecimals(4)
        self.resolution_spin.setSpecialValueText("native")
        self.resolution_spin.setToolTip(
            "For layers that are not files (WMS, XYZ, virtual): map units per pixel of the exported image"
        )
        advanced_form.addRow("Export resolution", self.resolution_spin)
        self.read_error_combo = _choices("on_read_error")
        advanced_form.addRow("Unreadable pixels", self.read_error_combo)
        self.force_gsd_check = QCheckBox("Run anyway")
        self.force_gsd_check.setToolTip(
            "Run on scenes far coarser than the scale an expression's category was learned at (force GSD); "
            "without it such a scene is refused before any tile is read"
        )
        advanced_form.addRow("Coarse scenes", self.force_gsd_check)
        self.tta_check = QCheckBox("Average (4× slower)")
        self.tta_check.setToolTip(
            "Test-time flips: run the model on each tile and on its three flips and average them, at four "
            "times the model's time; measured better on vehicles and roads, worse on water"
        )
        advanced_form.addRow("Test-time flips", self.tta_check)
        self.python_widget = QgsFileWidget()
        self.python_widget.setStorageMode(QgsFileWidget.GetFile)
        self.python_widget.setDialogTitle("Python interpreter with rrsis's packages (torch, rasterio, geopandas...)")
        self.python_widget.lineEdit().setPlaceholderText(f"${deps.ENV}, else the plugin's environment")
        self.python_widget.setToolTip(
            "The Python that runs the segmentation in a separate process. Empty: $RRSIS_PYTHON, else the "
            "environment Install now creates under the QGIS profile."
        )
        self.python_widget.setFilePath(QgsSettings().value(deps.SETTING, "", type=str))
        advanced_form.addRow("Worker Python", self.python_widget)

        buttons = QHBoxLayout()
        self.run_button = QPushButton("Run")
        self.run_button.setDefault(True)
        self.cancel_button = QPushButton("Cancel")
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 100)
        self.progress_bar.setValue(0)
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextSelectableByMouse)

        outer.addWidget(self.form_widget)
        outer.addWidget(self.advanced)
        outer.addLayout(buttons)
        outer.addWidget(self.progress_bar)
        outer.addWidget(self.status_label)
        self.worker_panel = WorkerPanel(self.workers)
        outer.addWidget(self.worker_panel)
        outer.addStretch(1)

        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)  # the form narrows with the dock
        scroll.setFrameShape(QFrame.NoFrame)
        scroll.setWidget(body)
        self.setWidget(scroll)

    def _connect(self) -> None:
        self.layer_combo.layerChanged.connect(self._update_state)
        self.layer_combo.layerChanged.connect(self._layer_changed_hint)
        self.expression_edit.textChanged.connect(self._update_state)
        self.expression_edit.textEdited.connect(self.schedule_hint)  # typing, not setText()
        self.expression_edit.textChanged.connect(self._text_changed_hint)
        self.completer.activated[str].connect(self.schedule_hint)
        self.hint_timer.timeout.connect(self.show_hint)
        self.hints.answered.connect(self._hints_answered)
        self.model_widget.fileChanged.connect(self.refresh_model)
        self.threshold_slider.valueChanged.connect(self._show_threshold)
        self.extent_combo.currentIndexChanged.connect(self._extent_choice_changed)
        self.draw_button.clicked.connect(self.draw_extent)
        self.picker.drawn.connect(self._update_state)
        self.output_group.buttonToggled.connect(self._update_state)
        self.output_widget.fileChanged.connect(self._update_state)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.expression_edit.returnPressed.connect(self.run)
        self.deps_panel.installed.connect(self._installed)
        self.python_widget.fileChanged.connect(self._python_changed)
        if hasattr(self.iface, "currentLayerChanged"):
            self.iface.currentLayerChanged.connect(self._active_layer_changed)

    # ---- state ---------------------------------------------------------------------------
    def check_dependencies(self) -> bool:
        """Find the worker Python and, when the dock is visible, probe it; True when one is set."""
        self.python_choice = deps.choose_python()
        self.worker_hello = None
        if self.python_choice.python is None:
            self.deps_panel.show_no_python()
        else:
            self.deps_panel.show_probing(self.python_choice)
            if self.isVisible():
                self.probe.start(self.python_choice.python)
        self._update_state()
        return self.python_choice.python is not None

    @property
    def dependencies_ok(self) -> bool:
        """A worker Python is set and its probe has not found it unusable (pending is fine)."""
        if self.python_choice.python is None:
            return False
        return self.worker_hello is None or usable(self.worker_hello)

    def _python_changed(self, path: str) -> None:
        QgsSettings().setValue(deps.SETTING, path.strip())
        self.check_dependencies()

    def _installed(self) -> None:
        devices.clear_cache()
        self.hints.forget_failures()
        self.check_dependencies()

    def _probed(self, python: str, hello: dict) -> None:
        if python != self.python_choice.python:
            return  # an answer about an interpreter no longer chosen
        self.worker_hello = hello
        self.deps_panel.show_probe(self.python_choice, hello)
        self._set_gpu_available(len(hello.get("devices") or []) > 1)
        if hello.get("type") == "hello" and not self.model_widget.filePath().strip():
            checkpoints.set_library_default(hello.get("default_checkpoint"))
            self.refresh_model()
        self._update_state()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        """Opening the dock: follow the active layer; ask the worker Python what it has."""
        super().showEvent(event)
        if self.task is None:
            self.use_active_layer()
        if self.python_choice.python is not None and self.worker_hello is None:
            self.probe.start(self.python_choice.python)

    def use_active_layer(self) -> None:
        layer = self.iface.activeLayer() if hasattr(self.iface, "activeLayer") else None
        if isinstance(layer, QgsRasterLayer):
            self.layer_combo.setLayer(layer)

    def _active_layer_changed(self, layer) -> None:
        if isinstance(layer, QgsRasterLayer) and self.task is None:
            self.layer_combo.setLayer(layer)

    def _set_gpu_available(self, available: bool) -> None:
        self.gpu_available = bool(available)
        item = self.device_combo.model().item(2)
        item.setEnabled(self.gpu_available)
        item.setToolTip("" if available else "the worker's torch sees no CUDA GPU on this machine")
        if not available and self.device_combo.currentIndex() == 2:
            self.device_combo.setCurrentIndex(0)

    def refresh_model(self, *_args) -> None:
        """Read the chosen (or default) checkpoint's config: name, vocabulary, threshold."""
        choice = self.model_widget.filePath()
        path = checkpoints.resolve(choice)
        self.card = checkpoints.read_card(path)
        if self.card is None:
            self.model_label.setText(checkpoints.NO_DEFAULT_MODEL)
        elif not self.card.usable:
            self.model_label.setText(self.card.error)
        else:
            kind = "" if choice.strip() else "default model: "
            size = f", {self.card.input_size} px tiles" if self.card.input_size else ""
            self.model_label.setText(f"{kind}{self.card.name}{size}")
            self.threshold_slider.setValue(int(round(self.card.threshold * 100)))
            self.completer.vocabulary = self._vocabulary()
            self.completer.refresh(self.expression_edit.text())
        if self.hint_label.isVisible():
            self.schedule_hint()
        self._update_state()

    # ---- "understood as" ------------------------------------------------------------------
    def _checkpoint_key(self) -> str:
        return str(self.card.path) if self.card is not None and self.card.usable else ""

    def _vocabulary(self) -> List[str]:
        """The completer's words: the config's vocabulary and the phrasings the worker reported."""
        words = list(self.card.vocabulary) if self.card is not None else []
        known = self.hints.knowledge.get(self._checkpoint_key()) or {}
        return list(dict.fromkeys(words + [str(p) for p in known.get("known_phrasings") or []]))

    def schedule_hint(self, *_args) -> None:
        """Explain the expression about a second after the last key (debounced)."""
        self.hint_timer.start()

    def _layer_gsd_m(self) -> Optional[float]:
        layer = self.layer_combo.currentLayer()
        if not isinstance(layer, QgsRasterLayer) or layer.crs().isGeographic() or layer.width() <= 0:
            return None
        if layer.crs().mapUnits() != QgsUnitTypes.DistanceMeters:
            return None
        return max(layer.rasterUnitsPerPixelX(), layer.rasterUnitsPerPixelY())

    def show_hint(self) -> None:
        """Show what is known now, and ask a worker for the rest (answers arrive later)."""
        expressions = split_expressions(self.expression_edit.text())
        python = self.python_choice.python
        if not expressions or python is None or self.card is None or not self.card.usable:
            self._set_hint([])
            return
        key = self._checkpoint_key()
        self.hints.request(python, key, expressions, str(self.device_combo.currentData() or "auto"))
        if self.hints.failure(python, key):  # quiet fallback: no worker to ask, no hint
            self._set_hint([])
            return
        self._set_hint(hint_lines(self.hints, key, expressions, self._layer_gsd_m()))

    def _text_changed_hint(self, *_args) -> None:
        if self.hint_label.isVisible():  # set, not typed (history, a script): never leave a stale hint
            self.schedule_hint()

    def _layer_changed_hint(self, *_args) -> None:
        if self.hint_label.isVisible():  # the layer's GSD may make an expression too coarse
            self.show_hint()

    def _hints_answered(self) -> None:
        self.completer.vocabulary = self._vocabulary()
        self.completer.refresh(self.expression_edit.text())
        if self.hint_label.isVisible():
            self.show_hint()

    def _set_hint(self, lines: List[str]) -> None:
        self.hint_label.setText("\n".join(lines))
        self.hint_label.setVisible(bool(lines))

    def _plan_seen(self, msg: dict) -> None:
        """A run's plan for one expression: as good as an explain answer, cache it."""
        self.hints.remember(self._checkpoint_key(), str(msg.get("expression")), msg)

    def _show_threshold(self, value: int) -> None:
        self.threshold_label.setText(f"{value / 100:.2f}")

    def _extent_choice_changed(self, *_args) -> None:
        if self.extent_combo.currentData() != DRAWN:
            self.picker.hide_band()
        else:
            self.picker.show_band()
        self._update_state()

    def draw_extent(self) -> None:
        self.extent_combo.setCurrentIndex(self.extent_combo.findData(DRAWN))
        self.picker.start()
        self.set_status("drag a rectangle on the map")

    def _blocker(self) -> Optional[str]:
        """Why Run cannot start now (None: it can): the one place these are checked, for the
        Run button's state and for :meth:`build_request`."""
        if not self.dependencies_ok:
            return "set up the worker Python first (see above)"
        if not isinstance(self.layer_combo.currentLayer(), QgsRasterLayer):
            return "add a raster layer to the project"
        if self.card is None:
            return checkpoints.NO_DEFAULT_MODEL
        if not self.card.usable:
            return self.card.error
        if not split_expressions(self.expression_edit.text()):
            return "type what to segment, e.g. 'building along the road'"
        if self.file_radio.isChecked() and not self.output_widget.filePath().strip():
            return "choose the GeoPackage file to write, or 'Temporary layers'"
        return None

    def _update_state(self, *_args) -> None:
        running = self.task is not None
        self.form_widget.setEnabled(not running)
        self.advanced.setEnabled(not running)
        self.output_widget.setEnabled(self.file_radio.isChecked())
        self.overwrite_check.setEnabled(self.file_radio.isChecked())
        self.draw_button.setEnabled(self.extent_combo.currentData() == DRAWN)
        layer = self.layer_combo.currentLayer()
        self.resolution_spin.setEnabled(isinstance(layer, QgsRasterLayer) and file_source(layer) is None)
        blocker = None if running else self._blocker()
        self.run_button.setEnabled(not running and blocker is None)
        self.run_button.setToolTip(blocker or "")
        self.cancel_button.setEnabled(running)
        if running:
            return
        if blocker is not None:
            self.set_status(blocker)
        elif self.last_outcome is None:
            self.set_status("ready")

    def set_status(self, text: str) -> None:
        self.status_label.setText(text)

    # ---- running -------------------------------------------------------------------------
    def _fallback_resolution(self, layer: QgsRasterLayer) -> Optional[float]:
        """Map units per pixel of the canvas, in the layer's CRS (for services with no native size)."""
        if self.canvas.width() <= 0:
            return None
        try:
            transform = QgsCoordinateTransform(
                self.canvas.mapSettings().destinationCrs(), layer.crs(), self.project.transformContext()
            )
            extent = transform.transformBoundingBox(self.canvas.extent())
        except Exception:  # QgsCsException: the canvas extent is outside the layer CRS's domain
            return None
        return extent.width() / self.canvas.width() if extent.width() > 0 else None

    def build_request(self) -> SegmentationRequest:
        """The request for the current choices; :class:`LayerInputError` when unusable."""
        blocker = self._blocker()
        if blocker is not None:
            raise LayerInputError(blocker)
        layer = self.layer_combo.currentLayer()
        expressions = split_expressions(self.expression_edit.text())
        output = None
        if self.file_radio.isChecked():
            output = self.output_widget.filePath().strip()
            if not output.lower().endswith(".gpkg"):
                output += ".gpkg"
            if os.path.exists(output) and not self.overwrite_check.isChecked():
                raise LayerInputError(f"{output} exists: tick 'Replace if it exists' or choose another name")
        bands = parse_bands(self.bands_edit.text())
        extent = extent_for(self.extent_combo.currentData(), layer, self.canvas, self.picker, self.project)
        resolution = self.resolution_spin.value() or None
        raster = plan_raster_input(layer, extent, resolution, self._fallback_resolution(layer))
        return SegmentationRequest(
            raster=raster,
            expressions=expressions,
            python=self.python_choice.python,
            options=self.options(output, bands, raster.bbox),
            group_name=f"rrsis — {layer.name()}",
        )

    def options(self, output: Optional[str] = None, bands: Optional[List[int]] = None, bbox=None) -> PredictOptions:
        """The library's options for the dock's controls, checked by the library's schema (an
        error names the control that fixes it); :data:`DOCK_CONTROLS` maps each to its widget."""
        try:
            return PredictOptions(
                checkpoint=str(self.card.path) if self.card is not None and self.card.path else None,
                device=self.device_combo.currentData(),
                output=output,
                overwrite=self.overwrite_check.isChecked(),
                tile_size=self.tile_spin.value() or None,
                overlap=self.overlap_spin.value(),
                threshold=self.threshold_slider.value() / 100.0,
                bands=bands,
                bbox=tuple(bbox) if bbox else None,
                force_gsd=self.force_gsd_check.isChecked(),
                on_read_error=self.read_error_combo.currentData(),
                tta=self.tta_check.isChecked(),
            ).validate()
        except InputError as exc:
            raise LayerInputError(describe(exc, DOCK)) from None

    def run(self) -> Optional[SegmentTask]:
        """Start a background run with the current choices (returns the task, or None)."""
        if self.task is not None or not self.run_button.isEnabled():
            return None
        self.last_outcome = None
        try:
            request = self.build_request()
        except LayerInputError as exc:
            self.set_status(str(exc))
            self.iface.messageBar().pushWarning("rrsis", str(exc))
            return None
        history = remember_expressions(request.expressions)
        self.completer.history = history
        QgsSettings().setValue(SETTINGS_PREFIX + "checkpoint", self.model_widget.filePath())
        task = SegmentTask(request, self.project, self.iface.messageBar(), self.workers)
        task.progressChanged.connect(self._progress)
        task.message.connect(self.set_status)
        task.done.connect(self._finished)
        task.expression_plan.connect(self._plan_seen)
        self.task = task
        self.progress_bar.setValue(0)
        self.set_status("starting")
        self._update_state()
        QgsApplication.taskManager().addTask(task)
        return task

    def _progress(self, value: float) -> None:
        self.progress_bar.setValue(int(value))

    def cancel(self) -> None:
        if self.task is not None:
            self.set_status("cancelling")
            self.task.cancel()

    def _finished(self, outcome: Outcome) -> None:
        self.task = None
        self.last_outcome = outcome
        self.progress_bar.setValue(100 if outcome.status == "ok" else 0)
        self.set_status(outcome.message)
        self._update_state()
        self.run_finished.emit(outcome)

    def shutdown(self) -> None:
        """Stop what is running and remove canvas items (plugin unload)."""
        if hasattr(self.iface, "currentLayerChanged"):
            try:
                self.iface.currentLayerChanged.disconnect(self._active_layer_changed)
            except TypeError:
                pass
        task = self.task
        if task is not None:
            task.cancel()
            if task.status() not in (QgsTask.Complete, QgsTask.Terminated):
                task.waitForFinished(60000)
        self.picker.shutdown()
        self.deps_panel.shutdown()
        self.hint_timer.stop()
        self.worker_panel.timer.stop()
        self.workers.shutdown()  # first: a hint waiting on a worker gets its answer (cancelled) at once
        self.hints.shutdown()
        self.probe.wait()
