"""Asking the worker Python what it has (versions, devices) without freezing the GUI."""

from __future__ import annotations

import threading
from typing import Any, Dict, Optional

from qgis.PyQt.QtCore import QObject, QTimer, pyqtSignal

from . import worker_client

#: hello of each interpreter already probed in this QGIS session (the answer does not change
#: until packages are installed, which clears it)
_CACHE: Dict[str, Dict[str, Any]] = {}


def clear_cache() -> None:
    _CACHE.clear()


class WorkerProbe(QObject):
    """Runs ``python -m rrsis_qgis.worker --probe`` on a thread (importing torch takes seconds).

    ``result`` carries ``(python, hello)`` or ``(python, {"type": "error", "text": ...})``.
    """

    result = pyqtSignal(str, object)

    def __init__(self, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.thread: Optional[threading.Thread] = None
        self.python: Optional[str] = None

    def start(self, python: str) -> None:
        """Probe ``python`` (a cached answer comes back through the same signal, queued)."""
        if python in _CACHE:
            answer = _CACHE[python]
            QTimer.singleShot(0, lambda: self.result.emit(python, answer))
            return
        if self.thread is not None and self.thread.is_alive() and self.python == python:
            return
        self.python = python
        self.thread = threading.Thread(target=self._probe, args=(python,), name="rrsis-worker-probe", daemon=True)
        self.thread.start()

    def _probe(self, python: str) -> None:
        try:
            answer = worker_client.probe(python)
            _CACHE[python] = answer
        except worker_client.WorkerFailure as exc:
            answer = {"type": "error", "kind": exc.kind, "text": str(exc)}
        try:
            self.result.emit(python, answer)
        except RuntimeError:  # the dock was deleted meanwhile
            pass

    def wait(self, timeout: float = 120.0) -> None:
        if self.thread is not None:
            self.thread.join(timeout)
