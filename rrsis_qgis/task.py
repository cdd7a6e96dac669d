"""The background task: export the layer if needed, run the worker process, load results.

``run()`` executes in a QGIS task thread and touches no GUI object and no map layer: it exports
(with provider clones made on the main thread) and drives the worker process
(:mod:`rrsis_qgis.worker_client`), which runs the library outside QGIS. Its outcome, including
any failure, is kept on the task and handled in ``finished()``, which QGIS calls on the main
thread: results are loaded there, and errors reach the message bar (the library's own message for
the errors a user can fix, a short "see the log" otherwise, with the details in the log). A
worker that crashes is one of those errors: QGIS's process is never at stake.
"""

from __future__ import annotations

import shutil
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from qgis.core import Qgis, QgsMessageLog, QgsProject, QgsRasterBlockFeedback, QgsTask
from qgis.PyQt.QtCore import Qt, pyqtSignal

from rrsis_geo.options import DOCK, WORKER, PredictOptions, describe

from . import protocol
from .layers import LayerInputError, RasterInput, add_results
from .warm_worker import WorkerPool
from .worker_client import WorkerCancelled, WorkerFailure, WorkerProcess, WorkerRun

LOG_TAG = "rrsis"

#: Warnings quoted in the message of a run that went through (the rest are in the log).
WARNINGS_SHOWN = 3

#: Share of the progress bar taken by the export of a non-file layer.
EXPORT_SHARE = 15.0


@dataclass
class SegmentationRequest:
    """Everything one run needs; built on the main thread by the dock or Processing.

    ``options`` are the library's own (:class:`rrsis_geo.options.PredictOptions`, validated by
    the front end that built them); ``options.output`` None: temporary layers."""

    raster: RasterInput
    expressions: List[str]
    python: str  # the worker interpreter (rrsis_qgis.deps.choose_python)
    options: PredictOptions = field(default_factory=PredictOptions)
    group_name: str = "rrsis results"

    @property
    def output(self) -> Optional[str]:
        return None if self.options.output is None else str(self.options.output)


@dataclass
class Outcome:
    """How a run ended, as the dock shows it."""

    status: str  # "ok", "cancelled", "error"
    message: str
    layer_ids: List[str] = field(default_factory=list)
    feature_count: int = 0


class RunCancelled(Exception):
    """The user cancelled before the library was called (during the export)."""


def worker_request(request: SegmentationRequest, scene: str, output: str) -> Dict[str, Any]:
    """The ``run`` message fields for ``request`` (see :mod:`rrsis_qgis.protocol`): the scene,
    the expressions and every option the worker carries, from the one schema."""
    options = request.options.to_dict(WORKER)
    options.update(output=output, bbox=list(request.raster.bbox) if request.raster.bbox else None)
    return {"scene": scene, "expressions": list(request.expressions), **options}


class SegmentTask(QgsTask):
    """Runs one :class:`SegmentationRequest` in the background."""

    #: a progress message from the worker, (done, total, message) already formatted
    message = pyqtSignal(str)
    #: emitted from ``finished()`` (main thread) with the :class:`Outcome`
    done = pyqtSignal(object)
    #: a worker ``plan`` message about one expression (how the model reads it, its scale)
    expression_plan = pyqtSignal(object)

    def __init__(self, request: SegmentationRequest, project: Optional[QgsProject] = None, message_bar=None,
                 pool: Optional[WorkerPool] = None) -> None:
        label = "; ".join(request.expressions)
        super().__init__(f"Referring segmentation: {label}", QgsTask.CanCancel)
        self.request = request
        self.project = project or QgsProject.instance()
        self.message_bar = message_bar
        self.workdir = Path(tempfile.mkdtemp(prefix="rrsis-qgis-"))
        self.result: Optional[Dict[str, Any]] = None
        self.exception: Optional[BaseException] = None
        self.traceback = ""
        self.outcome: Optional[Outcome] = None
        self.pool = pool  # the dock's warm workers; None: a worker process for this run only
        self.worker: Optional[WorkerProcess] = None
        self.warnings: List[str] = []
        # made here, on the main thread, and kept until the task is gone: cancel() (main thread)
        # may reach it at any moment of the export
        self._export_feedback = QgsRasterBlockFeedback() if request.raster.needs_export else None
        self._base = 0.0

    @property
    def worker_pid(self) -> Optional[int]:
        """Process id of the running worker (None before it starts)."""
        return self.worker.pid if self.worker is not None else None

    # ---- task thread ---------------------------------------------------------------------
    def cancel(self) -> None:  # noqa: D401 - QgsTask override
        """Also stop an export in progress (QgsRasterFileWriter polls its own feedback)."""
        feedback = self._export_feedback
        if feedback is not None:
            feedback.cancel()
        super().cancel()

    def _export(self) -> str:
        export = self.request.raster.export
        feedback = self._export_feedback
        feedback.progressChanged.connect(self._export_progress, Qt.DirectConnection)
        self.message.emit(f"exporting layer '{self.request.raster.layer_name}' to GeoTIFF")
        path = export.write(str(self.workdir / "scene.tif"), feedback)
        if self.isCanceled():
            raise RunCancelled()
        return path

    def _worker_ready(self, worker: WorkerProcess) -> None:
        self.worker = worker
        self.message.emit("starting the worker" if worker.hello is None else "asking the warm worker")

    def _export_progress(self, value: float) -> None:
        self.setProgress(EXPORT_SHARE * value / 100.0)

    def _on_message(self, msg: Dict[str, Any]) -> None:
        """A worker message (task thread): progress, plan and warnings go to the dock."""
        kind = msg.get("type")
        if kind == protocol.PROGRESS:
            done, total = int(msg.get("done") or 0), int(msg.get("total") or 0)
            if total:
                self.setProgress(self._base + (100.0 - self._base) * min(done, total) / total)
            if msg.get("message"):
                self.message.emit(str(msg["message"]))
        elif kind == protocol.PLAN:
            self.message.emit(str(msg.get("text", "")))
            QgsMessageLog.logMessage(f"plan: {msg.get('text', '')}", LOG_TAG, Qgis.Info)
            if msg.get("expression"):
                self.expression_plan.emit(msg)
        elif kind == protocol.WARNING:
            text = str(msg.get("text", ""))
            self.warnings.append(text)
            QgsMessageLog.logMessage(text, LOG_TAG, Qgis.Warning)

    def run(self) -> bool:
        try:
            request = self.request
            if request.raster.needs_export:
                scene = self._export()
                self._base = EXPORT_SHARE
            else:
                scene = request.raster.path
            output = request.output or str(self.workdir / "result.gpkg")
            body = worker_request(request, scene, output)
            if self.pool is None:
                self.message.emit("starting the worker")
                self.worker = WorkerRun(request.python, body, self._on_message, self.isCanceled)
                self.result = self.worker.run()
                return True
            options = request.options
            self.result = self.pool.request(
                request.python, str(options.checkpoint or ""), str(options.device or "auto"), protocol.RUN, body,
                self._on_message, self.isCanceled, self._worker_ready,
            )
            return True
        except BaseException as exc:  # kept for finished(): never raise in a task thread
            self.exception = exc
            self.traceback = traceback.format_exc()
            return False

    # ---- main thread ---------------------------------------------------------------------
    def _was_cancelled(self) -> bool:
        if isinstance(self.exception, (RunCancelled, WorkerCancelled)):
            return True
        return self.exception is None and self.isCanceled()

    def finished(self, result: bool) -> None:  # noqa: D401 - QgsTask override
        try:
            self.outcome = self._finish(result)
        except Exception as exc:  # loading the results failed: report like any other error
            self.exception, self.traceback = exc, traceback.format_exc()
            self.outcome = self._error_outcome()
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self._release()
        self._notify(self.outcome)
        self.done.emit(self.outcome)

    def _release(self) -> None:
        """Main thread, once the thread is done: free what was made here (the export's provider
        and renderer clones) here, and break the task <-> worker reference cycle (the worker's
        callbacks are this task's methods), so that no garbage collection on another thread
        ever frees a QGIS object of this thread."""
        if self.request.raster.export is not None:
            self.request.raster.export.release()
        if isinstance(self.worker, WorkerRun):
            self.worker.detach()

    def _finish(self, result: bool) -> Outcome:
        if result and self.result:
            temporary = self.request.output is None
            path = str(self.result["output"])
            names = {str(layer.get("name")): str(layer.get("expression")) for layer in self.result.get("layers", [])}
            layers = add_results(
                path,
                self.request.expressions,
                temporary=temporary,
                project=self.project,
                group_name=self.request.group_name,
                layer_expressions=names,
            )
            count = int(self.result.get("count", 0))
            where = "temporary layers" if temporary else path
            text = f"{count} polygon(s) in {len(layers)} layer(s) ({where})"
            if self.warnings:
                shown = WARNINGS_SHOWN
                more = f" (+{len(self.warnings) - shown} more in the rrsis log)" if len(self.warnings) > shown else ""
                text += f"; warning: {' | '.join(self.warnings[:shown])}{more}"
            return Outcome("ok", text, [layer.id() for layer in layers], count)
        if self._was_cancelled():
            return Outcome("cancelled", "cancelled; nothing was written")
        return self._error_outcome()

    def _error_outcome(self) -> Outcome:
        exc = self.exception
        if isinstance(exc, LayerInputError) or (isinstance(exc, WorkerFailure) and exc.kind in ("input", "dependency", "start", "protocol")):
            QgsMessageLog.logMessage(str(exc), LOG_TAG, Qgis.Warning)
            return Outcome("error", describe(exc, DOCK))  # the fix, if any, as the dock's control
        if isinstance(exc, WorkerFailure):  # a crash or a bug in the worker: the details go to the log
            QgsMessageLog.logMessage(f"{exc}\n{exc.detail}", LOG_TAG, Qgis.Critical)
            return Outcome("error", f"{exc} (details in the rrsis tab of the log messages panel)")
        QgsMessageLog.logMessage(
            f"unexpected error in '{self.description()}':\n{self.traceback or repr(exc)}",
            LOG_TAG,
            Qgis.Critical,
        )
        short = f"{type(exc).__name__}: {exc}" if exc else "the task failed"
        return Outcome("error", f"unexpected error ({short}); see the rrsis tab of the log messages panel")

    def _notify(self, outcome: Outcome) -> None:
        if self.message_bar is None:
            return
        level = {"ok": Qgis.Success, "cancelled": Qgis.Info, "error": Qgis.Critical}[outcome.status]
        if outcome.status == "ok" and self.warnings:
            level = Qgis.Warning  # e.g. an expression far from what the model learned, skipped windows
        self.message_bar.pushMessage("rrsis", outcome.message, level, 0 if level == Qgis.Critical else 6)
