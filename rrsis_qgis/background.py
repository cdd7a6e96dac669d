"""A function on a Python thread whose outcome is handed over on the main (GUI) thread.

The dock asks workers things that take seconds (what a Python has, how a model reads an
expression) without freezing QGIS. The thread that waits for the worker never touches a Qt
object: a Qt call from a plain Python thread on an object the GUI thread may be deleting at that
moment (the dock closing, the plugin unloading) is a crash of QGIS, not an exception. The thread
puts its outcome in a queue; a timer owned by the GUI thread collects it and calls back there.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Optional, Tuple

from qgis.PyQt.QtCore import QObject, QTimer

#: how often the GUI thread looks for an outcome while a call is on its way
POLL_MS = 40


class BackgroundCall(QObject):
    """Runs one call at a time on a daemon thread; ``on_done(ok, value)`` on the GUI thread.

    ``ok`` is False when the function raised; ``value`` is then the exception.
    """

    def __init__(self, on_done: Callable[[bool, Any], None], name: str, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.on_done = on_done
        self.name = name
        self.thread: Optional[threading.Thread] = None
        self._outcomes: "queue.SimpleQueue[Tuple[bool, Any]]" = queue.SimpleQueue()
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self.deliver)

    def busy(self) -> bool:
        """A call is running, or its outcome has not been handed over yet."""
        return (self.thread is not None and self.thread.is_alive()) or not self._outcomes.empty()

    def start(self, function: Callable[..., Any], *args: Any) -> None:
        """Run ``function(*args)`` on a new thread (the caller checks :meth:`busy` first)."""
        self.thread = threading.Thread(target=self._run, args=(function, args), name=self.name, daemon=True)
        self.thread.start()
        self._timer.start()

    def _run(self, function: Callable[..., Any], args: tuple) -> None:  # the thread: no Qt here
        try:
            self._outcomes.put((True, function(*args)))
        except BaseException as exc:  # handed over, never raised in a thread
            self._outcomes.put((False, exc))

    def deliver(self) -> None:
        """Hand over what has arrived (GUI thread; the timer calls it, tests may too)."""
        while True:
            try:
                ok, value = self._outcomes.get_nowait()
            except queue.Empty:
                break
            self.on_done(ok, value)
        if not self.busy():
            self._timer.stop()

    def join(self, timeout: Optional[float] = None) -> None:
        """Wait for the thread (plugin unload); its outcome, if any, is dropped."""
        self._timer.stop()
        if self.thread is not None:
            self.thread.join(timeout)
        while True:
            try:
                self._outcomes.get_nowait()
            except queue.Empty:
                break
