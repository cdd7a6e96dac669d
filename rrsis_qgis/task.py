"""The background task: export the layer if needed, run :func:`rrsis_geo.predict`, load results.

``run()`` executes in a QGIS worker thread and touches no GUI object and no map layer: it only
writes files (the export uses provider clones made on the main thread). Its outcome, including
any exception, is kept on the task and handled in ``finished()``, which QGIS calls on the main
thread: results are loaded there, and errors reach the message bar (the library's own message for
the errors a user can fix, a short "see the log" otherwise, with the traceback in the log).
"""

from __future__ import annotations

import shutil
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from qgis.core import Qgis, QgsMessageLog, QgsProject, QgsRasterBlockFeedback, QgsTask
from qgis.PyQt.QtCore import Qt, pyqtSignal

from .checkpoints import SEGMENTERS
from .layers import LayerInputError, RasterInput, add_results
from .threads import call_in_fresh_thread

LOG_TAG = "rrsis"

#: Share of the progress bar taken by the export of a non-file layer.
EXPORT_SHARE = 15.0


@dataclass
class SegmentationRequest:
    """Everything one run needs; built on the main thread by the dock."""

    raster: RasterInput
    expressions: List[str]
    checkpoint: Optional[Path] = None
    device: str = "auto"
    threshold: Optional[float] = None
    tile_size: Optional[int] = None
    overlap: float = 0.25
    bands: Optional[List[int]] = None
    output: Optional[str] = None  # GeoPackage path; None: temporary layers
    overwrite: bool = False
    group_name: str = "rrsis results"


@dataclass
class Outcome:
    """How a run ended, as the dock shows it."""

    status: str  # "ok", "cancelled", "error"
    message: str
    layer_ids: List[str] = field(default_factory=list)
    feature_count: int = 0


class RunCancelled(Exception):
    """The user cancelled before the library was called (during the export)."""


class SegmentTask(QgsTask):
    """Runs one :class:`SegmentationRequest` in the background."""

    #: a progress message from the library, (done, total, message) already formatted
    message = pyqtSignal(str)
    #: emitted from ``finished()`` (main thread) with the :class:`Outcome`
    done = pyqtSignal(object)

    def __init__(self, request: SegmentationRequest, project: Optional[QgsProject] = None, message_bar=None) -> None:
        label = "; ".join(request.expressions)
        super().__init__(f"Referring segmentation: {label}", QgsTask.CanCancel)
        self.request = request
        self.project = project or QgsProject.instance()
        self.message_bar = message_bar
        self.workdir = Path(tempfile.mkdtemp(prefix="rrsis-qgis-"))
        self.result_path: Optional[str] = None
        self.feature_count = 0
        self.exception: Optional[BaseException] = None
        self.traceback = ""
        self.outcome: Optional[Outcome] = None
        self._export_feedback: Optional[QgsRasterBlockFeedback] = None

    # ---- worker thread -------------------------------------------------------------------
    def cancel(self) -> None:  # noqa: D401 - QgsTask override
        """Also stop an export in progress (QgsRasterFileWriter polls its own feedback)."""
        if self._export_feedback is not None:
            self._export_feedback.cancel()
        super().cancel()

    def _export(self) -> str:
        export = self.request.raster.export
        feedback = QgsRasterBlockFeedback()
        feedback.progressChanged.connect(
            lambda value: self.setProgress(EXPORT_SHARE * value / 100.0), Qt.DirectConnection
        )
        self._export_feedback = feedback
        self.message.emit(f"exporting layer '{self.request.raster.layer_name}' to GeoTIFF")
        path = export.write(str(self.workdir / "scene.tif"), feedback)
        self._export_feedback = None
        if self.isCanceled():
            raise RunCancelled()
        return path

    def _progress(self, base: float):
        span = 100.0 - base

        def report(done: int, total: int, text: str = "") -> None:
            if total:
                self.setProgress(base + span * min(done, total) / total)
            if text:
                self.message.emit(str(text))

        return report

    def run(self) -> bool:
        scene = None
        try:
            request = self.request
            base = 0.0
            if request.raster.needs_export:
                scene = self._export()
                base = EXPORT_SHARE
            else:
                scene = request.raster.path
            output = request.output or str(self.workdir / "result.gpkg")
            gdf = call_in_fresh_thread(self._predict, scene, output, base)
            self.result_path = output
            self.feature_count = len(gdf)
            return True
        except BaseException as exc:  # kept for finished(): never raise in a worker thread
            self.exception = exc
            self.traceback = traceback.format_exc()
            return False
        finally:
            if scene is not None and request.raster.needs_export:
                Path(scene).unlink(missing_ok=True)

    def _predict(self, scene: str, output: str, base: float):
        """Load the model (cached) and run the library; on a thread QGIS never used (see threads.py)."""
        import rrsis_geo

        request = self.request
        self.message.emit("loading the model")
        segmenter = SEGMENTERS.get(request.checkpoint, request.device)
        if self.isCanceled():
            raise RunCancelled()
        return rrsis_geo.predict(
            scene,
            request.expressions,
            segmenter=segmenter,
            output=output,
            overwrite=request.overwrite,
            tile_size=request.tile_size,
            overlap=request.overlap,
            bands=request.bands,
            threshold=request.threshold,
            bbox=request.raster.bbox,
            progress=self._progress(base),
            cancel=self.isCanceled,
        )

    # ---- main thread ---------------------------------------------------------------------
    def _was_cancelled(self) -> bool:
        if isinstance(self.exception, RunCancelled):
            return True
        try:
            from rrsis_geo.errors import Cancelled
        except ImportError:
            return False
        return isinstance(self.exception, Cancelled) or (self.exception is None and self.isCanceled())

    def finished(self, result: bool) -> None:  # noqa: D401 - QgsTask override
        try:
            self.outcome = self._finish(result)
        except Exception as exc:  # loading the results failed: report like any other error
            self.exception, self.traceback = exc, traceback.format_exc()
            self.outcome = self._error_outcome()
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self._notify(self.outcome)
        self.done.emit(self.outcome)

    def _finish(self, result: bool) -> Outcome:
        if result and self.result_path:
            temporary = self.request.output is None
            layers = add_results(
                self.result_path,
                self.request.expressions,
                temporary=temporary,
                project=self.project,
                group_name=self.request.group_name,
            )
            where = "temporary layers" if temporary else self.result_path
            text = f"{self.feature_count} polygon(s) in {len(layers)} layer(s) ({where})"
            return Outcome("ok", text, [layer.id() for layer in layers], self.feature_count)
        if self._was_cancelled():
            return Outcome("cancelled", "cancelled; nothing was written")
        return self._error_outcome()

    def _error_outcome(self) -> Outcome:
        from_user = isinstance(self.exception, LayerInputError)
        try:
            from rrsis_geo.errors import RRSISError

            from_user = from_user or isinstance(self.exception, RRSISError)
        except ImportError:
            pass
        if from_user:
            QgsMessageLog.logMessage(str(self.exception), LOG_TAG, Qgis.Warning)
            return Outcome("error", str(self.exception))
        QgsMessageLog.logMessage(
            f"unexpected error in '{self.description()}':\n{self.traceback or repr(self.exception)}",
            LOG_TAG,
            Qgis.Critical,
        )
        short = f"{type(self.exception).__name__}: {self.exception}" if self.exception else "the task failed"
        return Outcome("error", f"unexpected error ({short}); see the rrsis tab of the log messages panel")

    def _notify(self, outcome: Outcome) -> None:
        if self.message_bar is None:
            return
        level = {"ok": Qgis.Success, "cancelled": Qgis.Info, "error": Qgis.Critical}[outcome.status]
        self.message_bar.pushMessage("rrsis", outcome.message, level, 0 if outcome.status == "error" else 6)
