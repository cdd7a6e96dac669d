"""Processing algorithm ``rrsis:segment`` — "Segment by referring expression".

Inputs are resolved on the main thread in :meth:`prepareAlgorithm` (layers may only be read
there; a layer that is not a file gets its export planned with cloned providers), and the work
runs in :meth:`processAlgorithm`, which Processing may call in a background thread: it exports
the layer if needed and runs the library in a worker process (:mod:`rrsis_qgis.worker_client`,
the same as the dock's), reporting progress to ``feedback`` and stopping the worker when
``feedback.isCanceled()``.

The output is a GeoPackage with one layer per expression (the library's format). Processing's
destination semantics apply: the chosen file is replaced, as with QGIS's own algorithms.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import deque
from pathlib import Path
from typing import Any, Deque, Dict, List, Optional, Tuple

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingParameterBoolean,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingOutputMultipleLayers,
    QgsProcessingOutputNumber,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsRasterBlockFeedback,
)
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QIcon
from rrsis_geo.errors import InputError
from rrsis_geo.options import PROCESSING, OptionSpec, PredictOptions, describe, specs

from .. import checkpoints, deps, protocol
from ..expressions import split_expressions
from ..layers import (
    LayerInputError,
    RasterInput,
    apply_result_style,
    open_result_layers,
    parse_bands,
    plan_raster_input,
)
from ..paths import icon_path
from ..task import SegmentationRequest, worker_request
from ..worker_client import WorkerCancelled, WorkerFailure, WorkerRun

#: the options whose parameters are not derived from their kind alone (a layer extent, a folder,
#: a destination); every other Processing option of the schema becomes a parameter by its kind
SPECIAL = ("checkpoint", "bbox", "output")


#: Post-processors handed to Processing must outlive the algorithm instance (Processing does not
#: take ownership); the last few hundred are kept, far more than one run loads.
_STYLERS: Deque["ResultStyler"] = deque(maxlen=256)


class ResultStyler(QgsProcessingLayerPostProcessorInterface):
    """Applies the result style (and the expression as name) to a layer Processing loads."""

    def __init__(self, name: str, index: int) -> None:
        super().__init__()
        self.name = name
        self.index = index

    def postProcessLayer(self, layer, context, feedback) -> None:  # noqa: N802 - QGIS API
        layer.setName(self.name)
        apply_result_style(layer, self.index)


class SegmentAlgorithm(QgsProcessingAlgorithm):
    """Segment a raster layer by one or more referring expressions into a GeoPackage."""

    INPUT = "INPUT"
    EXPRESSIONS = "EXPRESSIONS"
    CHECKPOINT = "CHECKPOINT"
    THRESHOLD = "THRESHOLD"
    EXTENT = "EXTENT"
    TILE_SIZE = "TILE_SIZE"
    OVERLAP = "OVERLAP"
    DEVICE = "DEVICE"
    BANDS = "BANDS"
    EXPORT_RESOLUTION = "EXPORT_RESOLUTION"
    ON_READ_ERROR = "ON_READ_ERROR"
    FORCE_GSD = "FORCE_GSD"
    OUTPUT = "OUTPUT"
    LAYERS = "LAYERS"
    FEATURE_COUNT = "FEATURE_COUNT"

    def __init__(self) -> None:
        super().__init__()
        self._raster: Optional[RasterInput] = None
        self._expressions: List[str] = []
        self._checkpoint: Optional[Path] = None

    # ---- identity ------------------------------------------------------------------------
    def name(self) -> str:  # noqa: D401 - QGIS API
        return "segment"

    def displayName(self) -> str:
        return "Segment by referring expression"

    def group(self) -> str:
        return ""

    def groupId(self) -> str:
        return ""

    def icon(self) -> QIcon:
        return QIcon(str(icon_path()))

    def tags(self) -> List[str]:
        return ["segmentation", "referring", "expression", "deep learning", "polygons", "remote sensing"]

    def shortHelpString(self) -> str:
        return (
            "Finds what an English expression describes (\"building along the road\", \"water on the "
            "left\") in a georeferenced raster and writes its polygons to a GeoPackage, one layer per "
            "expression, with the attributes expression, score (mean probability), area_m2 and model.\n\n"
            "Expressions: one per line. Checkpoint: a model folder (config.json + model.safetensors); "
            "empty uses the default model. Threshold: empty uses the model's own. Extent: empty "
            "processes the whole layer. Layers that are not files (WMS, XYZ, virtual rasters) are "
            "exported to a temporary GeoTIFF first, at their native resolution unless an export "
            "resolution is given.\n\n"
            "The log shows, before any tile, how the model understands each expression and the "
            "scale (m/px) it runs at, and warns about expressions far from anything the model "
            "learned. A scene far coarser than an expression's scale is refused unless 'force GSD' "
            "is set; unreadable pixels (a corrupt or truncated file) stop the run unless 'skip' is chosen."
        )

    def createInstance(self) -> "SegmentAlgorithm":
        return SegmentAlgorithm()

    # ---- parameters ----------------------------------------------------------------------
    def initAlgorithm(self, config: Optional[Dict[str, Any]] = None) -> None:
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Raster layer"))
        self.addParameter(
            QgsProcessingParameterString(self.EXPRESSIONS, "Referring expressions (one per line)", multiLine=True)
        )
        self.addParameter(
            QgsProcessingParameterFile(
                self.CHECKPOINT,
                "Checkpoint folder (empty: default model)",
                behavior=QgsProcessingParameterFile.Folder,
                optional=True,
            )
        )
        self.addParameter(QgsProcessingParameterExtent(self.EXTENT, "Extent (empty: whole layer)", optional=True))
        # optional with defaults: a model or script that leaves them out gets the defaults
        advanced = [schema_parameter(s) for s in specs(PROCESSING) if s.name not in SPECIAL]
        advanced.append(QgsProcessingParameterNumber(
            self.EXPORT_RESOLUTION,
            "Export resolution of non-file layers, map units per pixel (empty: native)",
            type=QgsProcessingParameterNumber.Double,
            minValue=0.0,
            optional=True,
        ))
        for parameter in advanced:
            if parameter.name() != self.THRESHOLD:  # the threshold stays in view
                parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(parameter)
        self.addParameter(
            QgsProcessingParameterFileDestination(self.OUTPUT, "GeoPackage", fileFilter="GeoPackage (*.gpkg *.GPKG)")
        )
        self.addOutput(QgsProcessingOutputMultipleLayers(self.LAYERS, "Result layers"))
        self.addOutput(QgsProcessingOutputNumber(self.FEATURE_COUNT, "Number of polygons"))

    def checkParameterValues(self, parameters: Dict[str, Any], context: QgsProcessingContext):  # noqa: N802
        """Reject a run without expressions before it starts (the dialog shows the message)."""
        ok, message = super().checkParameterValues(parameters, context)
        if ok and not split_expressions(self.parameterAsString(parameters, self.EXPRESSIONS, context), "\n"):
            return False, "Give at least one referring expression, one per line."
        return ok, message

    # ---- running -------------------------------------------------------------------------
    def prepareAlgorithm(self, parameters: Dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback) -> bool:
        """Main thread: read the layer, plan its export, check expressions and checkpoint."""
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        if layer is None:
            raise QgsProcessingException(self.invalidRasterError(parameters, self.INPUT))
        self._expressions = split_expressions(self.parameterAsString(parameters, self.EXPRESSIONS, context), "\n")
        if not self._expressions:
            raise QgsProcessingException("give at least one referring expression, one per line")
        # None: the worker's library finds its default model (or says that there is none)
        self._checkpoint = checkpoints.resolve(self.parameterAsFile(parameters, self.CHECKPOINT, context))
        extent = None
        if parameters.get(self.EXTENT) not in (None, ""):
            extent = self.parameterAsExtent(parameters, self.EXTENT, context, layer.crs())
            if extent.isNull():
                extent = None
        resolution = None
        if parameters.get(self.EXPORT_RESOLUTION) not in (None, ""):
            resolution = self.parameterAsDouble(parameters, self.EXPORT_RESOLUTION, context) or None
        try:
            if extent is not None:
                extent = extent.intersect(layer.extent())
                if extent.isEmpty():
                    raise LayerInputError(f"the extent does not overlap layer '{layer.name()}'")
            self._raster = plan_raster_input(layer, extent, resolution)
        except LayerInputError as exc:
            raise QgsProcessingException(str(exc)) from exc
        return True

    def _scene_path(self, workdir: Path, feedback: QgsProcessingFeedback) -> str:
        raster = self._raster
        if not raster.needs_export:
            return raster.path
        feedback.pushInfo(f"exporting layer '{raster.layer_name}' to a temporary GeoTIFF")
        block_feedback = QgsRasterBlockFeedback()
        feedback.canceled.connect(block_feedback.cancel, Qt.DirectConnection)
        try:
            return raster.export.write(str(workdir / "scene.tif"), block_feedback)
        except LayerInputError as exc:
            raise QgsProcessingException(str(exc)) from exc

    def processAlgorithm(self, parameters: Dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback) -> Dict[str, Any]:
        python = deps.choose_python().python
        if python is None:
            raise QgsProcessingException(
                f"no worker Python: open the rrsis dock and click Install now, or set ${deps.ENV} to a Python "
                "with rrsis's packages (torch, rasterio, geopandas...)"
            )
        output = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        if not output.lower().endswith(".gpkg"):
            output += ".gpkg"
        try:
            options = self._options(parameters, context, output)
        except LayerInputError as exc:
            raise QgsProcessingException(str(exc)) from exc
        request = SegmentationRequest(raster=self._raster, expressions=self._expressions, python=python, options=options)
        workdir = Path(tempfile.mkdtemp(prefix="rrsis-processing-"))
        try:
            scene = self._scene_path(workdir, feedback)
            if feedback.isCanceled():
                return {}
            run = WorkerRun(python, worker_request(request, scene, output), _reporter(feedback), feedback.isCanceled)
            result = run.run()
        except WorkerCancelled:
            feedback.reportError("cancelled; nothing was written")
            return {}
        except WorkerFailure as exc:
            if exc.detail:
                feedback.pushDebugInfo(exc.detail)
            raise QgsProcessingException(describe(exc, PROCESSING)) from exc  # the fix as a parameter
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

        names = {str(layer.get("name")): str(layer.get("expression")) for layer in result.get("layers", [])}
        results = open_result_layers(output, self._expressions, names)
        uris = [layer.source() for layer in results]
        for layer in result.get("layers", []):
            feedback.pushInfo(f"{layer.get('expression')!r}: {layer.get('count', 0)} polygon(s)")
        if context.project() is not None:
            self._load_on_completion([(layer.source(), layer.name()) for layer in results], context)
        return {self.OUTPUT: output, self.LAYERS: uris, self.FEATURE_COUNT: int(result.get("count", 0))}

    def _options(self, parameters: Dict[str, Any], context: QgsProcessingContext, output: str) -> PredictOptions:
        """The library's options from the parameters (each read by its schema kind), checked by
        the schema; an error names the parameter that fixes it."""
        values: Dict[str, Any] = {}
        for s in specs(PROCESSING):
            if s.name in SPECIAL or parameters.get(s.processing) in (None, ""):
                continue  # left out: the schema's default
            if s.kind is bool:
                values[s.name] = self.parameterAsBool(parameters, s.processing, context)
            elif s.choices:
                values[s.name] = s.choices[self.parameterAsEnum(parameters, s.processing, context)]
            elif s.kind is int:
                values[s.name] = self.parameterAsInt(parameters, s.processing, context) or None  # 0: default
            elif s.kind is float:
                values[s.name] = self.parameterAsDouble(parameters, s.processing, context)
            elif s.kind == "bands":
                values[s.name] = parse_bands(self.parameterAsString(parameters, s.processing, context), PROCESSING)
            else:
                values[s.name] = self.parameterAsString(parameters, s.processing, context) or None
        values.update(
            checkpoint=str(self._checkpoint) if self._checkpoint else None, output=output,
            overwrite=True,  # Processing's destination semantics: the chosen file is replaced
            bbox=tuple(self._raster.bbox) if self._raster.bbox else None,
        )
        try:
            return PredictOptions(**values).validate()
        except InputError as exc:
            raise LayerInputError(describe(exc, PROCESSING)) from None

    def _load_on_completion(self, layers: List[Tuple[str, str]], context: QgsProcessingContext) -> None:
        """When run from the toolbox, QGIS loads these layers, named and styled, at the end."""
        for index, (uri, name) in enumerate(layers):
            details = QgsProcessingContext.LayerDetails(name, context.project(), self.OUTPUT)
            styler = ResultStyler(name, index)
            _STYLERS.append(styler)
            details.setPostProcessor(styler)
            context.addLayerToLoadOnCompletion(uri, details)


def schema_parameter(option: OptionSpec) -> QgsProcessingParameterDefinition:
    """The Processing parameter of one schema option, by its kind (name, caption, default, range,
    choices: all from :mod:`rrsis_geo.options`)."""
    name, label = option.processing, option.label or option.help[:1].upper() + option.help[1:]
    if option.kind is bool:
        return QgsProcessingParameterBoolean(name, label, defaultValue=bool(option.default), optional=True)
    if option.choices:
        labels = [f"{v}: {option.choice_label(v)}" for v in option.choices]
        return QgsProcessingParameterEnum(name, label, options=labels, defaultValue=option.choices.index(option.default),
                                          optional=True)
    if option.kind in (int, float):
        kind = QgsProcessingParameterNumber.Integer if option.kind is int else QgsProcessingParameterNumber.Double
        extra: Dict[str, Any] = {}
        if option.default is not None:
            extra["defaultValue"] = option.default
        elif option.kind is int:
            extra["defaultValue"] = 0  # 0 (or empty): the library's default
        # open bounds are checked by the schema when the run starts
        low = 0 if option.kind is int and option.default is None else option.low
        if low is not None:
            extra["minValue"] = low
        if option.high is not None:
            extra["maxValue"] = option.high
        return QgsProcessingParameterNumber(name, label, type=kind, optional=True, **extra)
    return QgsProcessingParameterString(name, label, optional=True)


def _reporter(feedback: QgsProcessingFeedback):
    """Worker messages -> Processing feedback (progress bar, log)."""

    def report(msg: Dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == protocol.PROGRESS:
            done, total = int(msg.get("done") or 0), int(msg.get("total") or 0)
            if total:
                feedback.setProgress(100.0 * min(done, total) / total)
            if msg.get("message"):
                feedback.setProgressText(str(msg["message"]))
        elif kind == protocol.HELLO:
            feedback.pushInfo(f"worker: Python {msg.get('python_version')} ({msg.get('python')}), torch {msg.get('torch')}")
        elif kind == protocol.PLAN:
            feedback.pushInfo(str(msg.get("text", "")))
        elif kind == protocol.WARNING:
            feedback.pushWarning(str(msg.get("text", "")))

    return report
