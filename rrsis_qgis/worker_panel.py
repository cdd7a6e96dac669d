"""The dock's line about its warm worker: state, memory, how long it is kept, a Stop button.

Reads :meth:`rrsis_qgis.warm_worker.WorkerPool.describe` (plain data) on the GUI thread every
couple of seconds while the dock is shown; the idle time is a QGIS setting.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, List, Optional

from qgis.core import QgsSettings
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSpinBox, QWidget

from .expressions import SETTINGS_PREFIX
from .warm_worker import IDLE_S, WorkerPool

#: QGIS setting: minutes a worker waits for the next run before it stops (0: after each run)
IDLE_SETTING = SETTINGS_PREFIX + "worker_idle_minutes"
REFRESH_MS = 2000


def idle_minutes() -> int:
    return int(QgsSettings().value(IDLE_SETTING, int(IDLE_S // 60), type=int))


def describe_workers(rows: List[Dict[str, Any]]) -> str:
    """``Worker: idle, 612 MB (pid 4242), 3 requests`` — or that none runs."""
    if not rows:
        return "Worker: not running (the next run starts one)"
    parts = []
    for row in rows:
        memory = f", {row['memory'] / 2**20:.0f} MB" if row.get("memory") else ""
        parts.append(f"{row['state']}{memory} (pid {row['pid']}, {row['device']}), {row['requests']} request(s)")
    return "Worker: " + "; ".join(parts)


class WorkerPanel(QWidget):
    """State of the dock's warm workers, the idle time before they stop, and Stop."""

    def __init__(self, pool: WorkerPool, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.pool = pool
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setToolTip("The process that runs the model outside QGIS; kept between runs so that the "
                              "next run and the hints need no model load")
        self.idle_spin = QSpinBox()
        self.idle_spin.setRange(0, 24 * 60)
        self.idle_spin.setSuffix(" min")
        self.idle_spin.setSpecialValueText("stop after each run")
        self.idle_spin.setToolTip("How long an idle worker keeps its model in memory before it stops")
        self.idle_spin.setValue(idle_minutes())
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop the worker now and give its memory back")
        layout.addWidget(self.label, 1)
        layout.addWidget(self.idle_spin)
        layout.addWidget(self.stop_button)
        self.pool.idle_s = 60.0 * self.idle_spin.value()
        self.idle_spin.valueChanged.connect(self._idle_changed)
        self.stop_button.clicked.connect(self.stop)
        self.timer = QTimer(self)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self.refresh)
        self.refresh()

    def _idle_changed(self, minutes: int) -> None:
        QgsSettings().setValue(IDLE_SETTING, int(minutes))
        self.pool.idle_s = 60.0 * minutes

    def stop(self) -> None:
        """Stop idle workers on a thread (a stop waits for the process); the timer shows it."""
        threading.Thread(target=self.pool.stop_idle_now, name="rrsis-worker-stop", daemon=True).start()
        self.stop_button.setEnabled(False)

    def refresh(self) -> None:
        rows = self.pool.describe()
        self.label.setText(describe_workers(rows))
        self.stop_button.setEnabled(any(row["state"] == "idle" for row in rows))

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.timer.start()
        self.refresh()
        super().showEvent(event)

    def hideEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.timer.stop()
        super().hideEvent(event)
