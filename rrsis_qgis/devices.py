"""Which devices the dock offers: probing for a GPU without freezing the GUI."""

from __future__ import annotations

import threading
from typing import Optional

from qgis.PyQt.QtCore import QObject, pyqtSignal


class DeviceProbe(QObject):
    """Finds out off the GUI thread whether torch sees a GPU (importing torch takes seconds)."""

    result = pyqtSignal(bool)

    def __init__(self, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.thread: Optional[threading.Thread] = None

    def start(self) -> None:
        if self.thread is not None:
            return
        self.thread = threading.Thread(target=self._probe, name="rrsis-device-probe", daemon=True)
        self.thread.start()

    def _probe(self) -> None:
        try:
            import torch

            available = bool(torch.cuda.is_available())
        except Exception:  # a broken torch install: the CPU entry still works
            available = False
        try:
            self.result.emit(available)
        except RuntimeError:  # the dock was deleted meanwhile
            pass

    def wait(self, timeout: float = 30.0) -> None:
        if self.thread is not None:
            self.thread.join(timeout)
