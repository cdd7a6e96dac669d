"""Asking the worker Python what it has (versions, devices) without freezing the GUI."""

from __future__ import annotations

from typing import Any, Dict, Optional

from qgis.PyQt.QtCore import QObject, QTimer, pyqtSignal

from . import worker_client
from .background import BackgroundCall

#: hello of each interpreter already probed in this QGIS session (the answer does not change
#: until packages are installed, which clears it)
_CACHE: Dict[str, Dict[str, Any]] = {}


def clear_cache() -> None:
    _CACHE.clear()


class WorkerProbe(QObject):
    """Runs ``python -m rrsis_qgis.worker --probe`` on a thread (importing torch takes seconds)
    that touches no Qt object; ``result`` is emitted on the main thread
    (:class:`~rrsis_qgis.background.BackgroundCall`).

    ``result`` carries ``(python, hello)`` or ``(python, {"type": "error", "text": ...})``.
    """

    result = pyqtSignal(str, object)

    def __init__(self, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.python: Optional[str] = None
        self._call = BackgroundCall(self._answered, "rrsis-worker-probe", self)

    def start(self, python: str) -> None:
        """Probe ``python`` (a cached answer comes back through the same signal, queued)."""
        if python in _CACHE:
            answer = _CACHE[python]
            QTimer.singleShot(0, lambda: self.result.emit(python, answer))
            return
        if self._call.busy() and self.python == python:
            return
        self.python = python
        self._call.start(_probe, python)

    def _answered(self, ok: bool, value: Any) -> None:
        """Main thread: cache and announce the probe's answer."""
        if ok:
            python, answer = value
            if answer.get("type") != "error":
                _CACHE[python] = answer
            self.result.emit(python, answer)
        else:  # the probe itself failed in an unexpected way
            self.result.emit(self.python or "", {"type": "error", "kind": "internal", "text": f"{type(value).__name__}: {value}"})

    def busy(self) -> bool:
        return self._call.busy()

    def wait(self, timeout: float = 120.0) -> None:
        """Wait for a probe on its way (plugin unload); its answer is dropped."""
        self._call.join(timeout)


def _probe(python: str) -> tuple:
    """The thread: the worker's hello, or an error answer (no Qt object is touched here)."""
    try:
        return python, worker_client.probe(python)
    except worker_client.WorkerFailure as exc:
        return python, {"type": "error", "kind": exc.kind, "text": str(exc)}
