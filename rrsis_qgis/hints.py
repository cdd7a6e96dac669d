"""The dock's "understood as …" hint: what the model reads in an expression, and its scale.

QGIS's process cannot embed text (the library never loads there), so a worker is asked
(``explain`` request, the dock's warm worker: :mod:`rrsis_qgis.warm_worker`) on a thread that touches no Qt
object (:class:`~rrsis_qgis.background.BackgroundCall`: the answer is stored and announced on the
GUI thread); answers are cached per (checkpoint, expression), the model's known phrasings per
checkpoint. A worker that cannot
answer (none installed, an older one that knows only ``run``) leaves the hint empty: the hint is
a convenience, never an obstacle to a run.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from qgis.core import Qgis, QgsMessageLog
from qgis.PyQt.QtCore import QObject, pyqtSignal

from rrsis_geo.errors import Fix
from rrsis_geo.options import DOCK, advice

from . import protocol, worker_client
from .background import BackgroundCall
from .warm_worker import WorkerPool

LOG_TAG = "rrsis"
#: shown for an expression whose answer is on its way
WAITING = "…"

Key = Tuple[str, str]  # (checkpoint, expression)


class ExplainService(QObject):
    """Asks workers how a checkpoint reads expressions; one worker at a time, answers cached.

    ``answered`` fires on the main thread whenever the cache has grown or a request failed.
    """

    answered = pyqtSignal()

    def __init__(self, parent: Optional[QObject] = None, pool: Optional[WorkerPool] = None) -> None:
        super().__init__(parent)
        self.pool = pool if pool is not None else WorkerPool()
        self._own_pool = pool is None
        self.explanations: Dict[Key, Dict[str, Any]] = {}
        self.knowledge: Dict[str, Dict[str, Any]] = {}
        self.failures: Dict[Tuple[str, str], str] = {}  # (python, checkpoint) -> why it cannot answer
        self.requests = 0  # questions asked (the cache spares the others)
        self.last_seconds: Optional[float] = None  # of the last answer: from asking to stored
        self._asked_at = 0.0
        self._pending: Optional[Tuple[str, str, List[str], str]] = None
        self._last_asked: Tuple[str, str] = ("", "")
        self._stop = threading.Event()
        self._call = BackgroundCall(self._answered, "rrsis-explain", self)
        #: set by the thread once the worker process runs, with :attr:`worker` (tests wait on it)
        self.worker_started = threading.Event()
        self.worker: Optional[worker_client.WorkerProcess] = None

    def explanation(self, checkpoint: str, expression: str) -> Optional[Dict[str, Any]]:
        return self.explanations.get((checkpoint, expression))

    def failure(self, python: str, checkpoint: str) -> Optional[str]:
        return self.failures.get((python, checkpoint))

    def remember(self, checkpoint: str, expression: str, msg: Dict[str, Any]) -> None:
        """Cache an explanation learnt elsewhere (a run's ``plan`` message)."""
        self.explanations[(checkpoint, expression)] = msg

    def busy(self) -> bool:
        """A worker is being asked, or its answer has not been stored yet."""
        return self._call.busy()

    def request(self, python: str, checkpoint: str, expressions: List[str], device: str = "cpu") -> bool:
        """Ask for what is not cached yet; True when an answer is (or will be) on its way.

        ``device``: the dock's, so that the hint asks the worker its runs use (warm, model loaded)."""
        if (python, checkpoint) in self.failures:
            return False
        missing = [e for e in expressions if (checkpoint, e) not in self.explanations]
        if not missing and checkpoint in self.knowledge:
            return False
        if self.busy():
            self._pending = (python, checkpoint, missing, device)  # the latest text wins
            return True
        self._pending = None
        self._stop.clear()
        self.worker_started.clear()
        self.requests += 1
        self._last_asked = (python, checkpoint)
        self._asked_at = time.monotonic()
        self._call.start(self._ask, python, checkpoint, missing, device)
        return True

    def _ask(self, python: str, checkpoint: str, expressions: List[str], device: str) -> Tuple[str, str, Dict[str, Any]]:
        """The thread: ask the warm worker; no Qt object is touched here."""
        answer, collect = worker_client.explain_collector()
        body = {"expressions": list(expressions), "checkpoint": checkpoint or None, "device": device}
        self.pool.request(python, checkpoint, device, protocol.EXPLAIN, body, collect, self._stop.is_set, self._started)
        return python, checkpoint, answer

    def _started(self, run: worker_client.WorkerProcess) -> None:  # the thread
        self.worker = run
        self.worker_started.set()

    def _answered(self, ok: bool, value: Any) -> None:
        """Main thread: store the answer (or why there is none), announce it, ask what waits."""
        self.last_seconds = time.monotonic() - self._asked_at
        if ok:
            _, checkpoint, answer = value
            self.knowledge[checkpoint] = answer["knowledge"] or {}
            for expression, msg in answer["explanations"].items():
                self.explanations[(checkpoint, expression)] = msg
        elif isinstance(value, worker_client.WorkerFailure) and value.kind == "cancelled":
            pass  # stopped on request: not a reason to give up on hints
        else:
            python, checkpoint = self._last_asked
            text = str(value) if isinstance(value, worker_client.WorkerFailure) else f"{type(value).__name__}: {value}"
            self.failures[(python, checkpoint)] = text
            QgsMessageLog.logMessage(f"no 'understood as' hints: {text}", LOG_TAG, Qgis.Info)
        self.answered.emit()
        if self._pending is not None and not self.busy():
            python, checkpoint, expressions, device = self._pending
            self.request(python, checkpoint, expressions, device)

    def forget_failures(self) -> None:
        """After packages were installed or the interpreter changed: try again."""
        self.failures.clear()

    def shutdown(self, timeout: float = 15.0) -> None:
        """Stop a worker on its way (plugin unload)."""
        self._pending = None
        self._stop.set()
        if self._own_pool:
            self.pool.shutdown()
        self._call.join(timeout)


def hint_lines(
    service: ExplainService, checkpoint: str, expressions: List[str], scene_gsd_m: Optional[float] = None
) -> List[str]:
    """One line per expression: the worker's "understood as …; runs at …" or :data:`WAITING`."""
    lines = []
    for expression in expressions:
        msg = service.explanation(checkpoint, expression)
        if msg is None:
            lines.append(f"'{expression}' {WAITING}")
            continue
        text = str(msg.get("understood") or msg.get("text") or "")
        coarsest = msg.get("coarsest_scene_m")
        if scene_gsd_m and coarsest and scene_gsd_m > float(coarsest):
            text += f"; this layer is {scene_gsd_m:.3g} m/px, too coarse (or {advice(Fix('force_gsd'), DOCK)})"
        lines.append(("⚠ " if msg.get("known") is False else "") + text)
    return lines
