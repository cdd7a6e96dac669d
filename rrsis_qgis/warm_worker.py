"""The warm worker: one worker process per (interpreter, checkpoint, device), kept between runs.

The dock's runs and "understood as" hints go to a :class:`WorkerPool`, which keeps a
:class:`WorkerSession` (protocol 2, :mod:`rrsis_qgis.protocol`) alive after a request: the
second run pays no torch import and no model load. Cancel stops the run, not the worker; a
worker that does not stop within :data:`CANCEL_GRACE_S` is killed, and one that dies is reported
as before and replaced at the next request. Workers stop after ``idle_s`` without a request,
and all of them when the plugin unloads (or QGIS quits: their stdin closes).

A worker whose hello says protocol 1 (one request per process) is driven as before, by
:class:`~rrsis_qgis.worker_client.WorkerRun`. No Qt here: threads and subprocesses only, so any
thread may call in (the dock's task thread, the hint thread); the dock reads :meth:`describe`
on the GUI thread.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from . import protocol
from .worker_client import (
    GRACE_S, MessageFn, WorkerCancelled, WorkerFailure, WorkerProcess, WorkerRun, _failure,
)

#: Seconds of silence after a ``cancel`` before a session worker is killed (a worker that got
#: the cancel says so every 2 s while its run winds down)
CANCEL_GRACE_S = 10.0
#: Seconds after a ``cancel`` by which the run must have stopped, heartbeat or not
CANCEL_LIMIT_S = 60.0
#: Seconds a new worker gets to say hello (it imports torch first).
START_TIMEOUT_S = 120.0
#: Seconds a session worker gets to exit after ``shutdown`` before it is killed.
SHUTDOWN_GRACE_S = 3.0
#: Default idle time before a warm worker stops and gives its memory back.
IDLE_S = 600.0

Key = Tuple[str, str, str]  # (interpreter, checkpoint, device)


class NoSessions(Exception):
    """The worker speaks protocol 1 only: one request per process."""


def memory_bytes(pid: Optional[int]) -> Optional[int]:
    """Resident memory of process ``pid`` (Linux /proc, else psutil when installed; else None)."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import psutil  # not a dependency: only where a user has it

        return int(psutil.Process(pid).memory_info().rss)
    except Exception:
        return None


class WorkerSession(WorkerProcess):
    """One worker process answering requests one at a time, its models kept loaded."""

    def __init__(self, python: str, cancel_grace_s: float = CANCEL_GRACE_S,
                 start_timeout_s: float = START_TIMEOUT_S) -> None:
        super().__init__(python)
        self.cancel_grace_s = cancel_grace_s
        self.start_timeout_s = start_timeout_s
        self.state = "new"  # new -> starting -> idle <-> busy -> stopped
        self.requests = 0  # answered or failed, on this process
        self.last_used = time.monotonic()
        self.stop_reason = ""
        self.stopped_by_pool = False  # idle time, Stop button, unload (not a death, not a cancel)
        self._stopped = threading.Event()  # never cleared: a stopped session never runs again
        self._lock = threading.Lock()  # one request at a time
        self._ids = 0

    def alive(self) -> bool:
        return not self._stopped.is_set() and (self.process is None or self.process.poll() is None)

    def _set_state(self, state: str) -> None:
        if not self._stopped.is_set():
            self.state = state

    # ---- start ---------------------------------------------------------------------------
    def _start_session(self, should_cancel: Callable[[], bool], on_started: Callable[["WorkerSession"], None]) -> None:
        """Start the process and wait for its hello; :class:`NoSessions` for a protocol-1 worker."""
        self._set_state("starting")
        self._start()
        if self._stopped.is_set():  # stopped (unload) while it started: it must not outlive the pool
            self.kill()
            self._close()
            raise WorkerCancelled(f"cancelled; the worker was stopped ({self.stop_reason})")
        on_started(self)
        deadline = time.monotonic() + self.start_timeout_s
        while self.hello is None:
            if should_cancel():
                self.stop("cancelled while starting", by_pool=False)
                raise WorkerCancelled()
            if time.monotonic() > deadline:
                self.stop("no hello", by_pool=False)
                raise WorkerFailure("start", f"the worker {self.python} did not start within {self.start_timeout_s:.0f} s")
            msg = self._next_message()
            if msg is None:
                stopped = self._stopped.is_set()  # by the pool (unload) while it started
                code = self._exit_code()
                self.stop("died while starting", by_pool=False)
                if stopped:
                    raise WorkerCancelled(f"cancelled; the worker was stopped ({self.stop_reason})")
                raise self._crashed(code)
            if msg is False:
                continue
            try:
                self._accept_hello(msg)
            except WorkerFailure:
                self.stop("protocol", by_pool=False)
                raise
        if not protocol.speaks_sessions(self.hello):
            self.stop("protocol 1", by_pool=False)
            raise NoSessions(self.python)
        self._set_state("idle")

    # ---- one request ---------------------------------------------------------------------
    def request(
        self,
        request_type: str,
        body: Dict[str, Any],
        on_message: Optional[MessageFn] = None,
        should_cancel: Optional[Callable[[], bool]] = None,
        on_started: Optional[Callable[["WorkerSession"], None]] = None,
    ) -> Dict[str, Any]:
        """Send one request and wait for its ``result`` (returned) or ``error`` (raised as a
        :class:`WorkerFailure`); starts the worker at the first request. ``on_started(self)``
        once the process runs (at once when it is warm)."""
        on_message = on_message or (lambda msg: None)
        should_cancel = should_cancel or (lambda: False)
        on_started = on_started or (lambda session: None)
        while not self._lock.acquire(timeout=0.1):  # another request is being answered
            if should_cancel():
                raise WorkerCancelled()
        try:
            if not self.alive():  # stopped by the pool meanwhile (unload), or dead
                raise WorkerCancelled(f"cancelled; the worker was stopped ({self.stop_reason or 'it exited'})")
            if self.process is None:
                self._start_session(should_cancel, on_started)
                on_message(self.hello)
            else:
                on_started(self)
            self._set_state("busy")
            self._ids += 1
            return self._exchange(self._ids, protocol.message(
                request_type, protocol=protocol.PROTOCOL_VERSION, id=self._ids, **body
            ), on_message, should_cancel)
        finally:
            self.requests += 1
            self.last_used = time.monotonic()
            if self.alive() and self.state == "busy":
                self._set_state("idle")
            self._lock.release()

    def _exchange(self, request_id: int, msg: Dict[str, Any], on_message: MessageFn,
                  should_cancel: Callable[[], bool]) -> Dict[str, Any]:
        self._write(msg)
        cancel_deadline: Optional[float] = None  # killed when silent until then
        cancel_limit = 0.0  # and in any case then
        while True:
            now = time.monotonic()
            if cancel_deadline is None and should_cancel():
                self._write(protocol.message(protocol.CANCEL, id=request_id))
                cancel_deadline, cancel_limit = now + self.cancel_grace_s, now + CANCEL_LIMIT_S
            if cancel_deadline is not None and (now > cancel_deadline or now > cancel_limit):
                self.stop("did not stop in time after a cancel", by_pool=False)
                raise WorkerCancelled("cancelled; the worker did not stop in time and was stopped")
            answer = self._next_message()
            if answer is False:
                continue
            if answer is not None and cancel_deadline is not None and answer.get("id") == request_id:
                cancel_deadline = time.monotonic() + self.cancel_grace_s  # it lives and is stopping
            if answer is None:  # stdout closed: the worker died, or was stopped by the pool
                stopped = self._stopped.is_set()
                code = self._exit_code()
                self.stop(f"died: {code}", by_pool=False)
                if stopped:
                    raise WorkerCancelled(f"cancelled; the worker was stopped ({self.stop_reason})")
                if cancel_deadline is not None:
                    raise WorkerCancelled("cancelled; the worker was stopped")
                raise self._crashed(code)
            if answer.get("id") not in (None, request_id):
                continue  # about an earlier request that was given up
            on_message(answer)
            if answer["type"] == protocol.RESULT:
                return answer
            if answer["type"] == protocol.ERROR:
                raise _failure(answer)

    def _exit_code(self) -> int:
        try:
            return self.process.wait(GRACE_S)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.process.wait()

    # ---- stop ----------------------------------------------------------------------------
    def stop(self, reason: str = "stopped", by_pool: bool = True) -> None:
        """End the worker: ``shutdown``, stdin closed, killed when it lingers; pipes closed."""
        if self._stopped.is_set():
            return
        self.stop_reason, self.stopped_by_pool = reason, by_pool
        self._stopped.set()
        self.state = "stopped"
        if self.process is None:
            return
        if self.process.poll() is None:
            self._write(protocol.message(protocol.SHUTDOWN))
            try:
                self.process.stdin.close()
            except OSError:
                pass
            try:
                self.process.wait(SHUTDOWN_GRACE_S)
            except subprocess.TimeoutExpired:
                pass
        self._close()

    def describe(self) -> Dict[str, Any]:
        """State, process id, resident memory, requests answered, seconds idle."""
        return {
            "state": self.state if self.alive() else "stopped", "pid": self.pid, "memory": memory_bytes(self.pid)
            if self.alive() else None, "requests": self.requests,
            "idle_s": time.monotonic() - self.last_used if self.state == "idle" else 0.0,
        }


class WorkerPool:
    """Warm workers by (interpreter, checkpoint, device); see the module docstring."""

    def __init__(self, idle_s: float = IDLE_S, reap_every_s: float = 5.0) -> None:
        self.idle_s = idle_s
        self.reap_every_s = reap_every_s
        self.sessions: Dict[Key, WorkerSession] = {}
        self.one_shot: Set[str] = set()  # interpreters whose worker speaks protocol 1
        self.started = 0  # worker processes started by the pool (tests count them)
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._reaper: Optional[threading.Thread] = None

    def session(self, python: str, checkpoint: str = "", device: str = "auto") -> WorkerSession:
        """The live session for this key, a new one when there is none (not started yet)."""
        key = (python, checkpoint or "", device or "auto")
        with self._lock:
            if self._closed.is_set():
                raise WorkerFailure("start", "the plugin is unloading: no new worker")
            found = self.sessions.get(key)
            dead = found if found is not None and not found.alive() else None
            if found is None or dead is not None:
                found = self.sessions[key] = WorkerSession(python)
                self.started += 1
                self._start_reaper()
        if dead is not None:  # died while idle: reap its process and pipes
            dead.stop(f"found dead (exit {dead.returncode})", by_pool=False)
        return found

    def request(
        self,
        python: str,
        checkpoint: str,
        device: str,
        request_type: str,
        body: Dict[str, Any],
        on_message: Optional[MessageFn] = None,
        should_cancel: Optional[Callable[[], bool]] = None,
        on_started: Optional[Callable[[WorkerProcess], None]] = None,
    ) -> Dict[str, Any]:
        """Answer one request on the warm worker of this key (a fresh process for a protocol-1
        worker); the ``result`` message, else :class:`WorkerFailure`."""
        should_cancel = should_cancel or (lambda: False)
        for attempt in range(2):
            if python in self.one_shot:
                break
            session = self.session(python, checkpoint, device)
            try:
                return session.request(request_type, body, on_message, should_cancel, on_started)
            except NoSessions:
                self.one_shot.add(python)
            except WorkerCancelled:
                # stopped by the pool (idle time, Stop) between being handed out and this request:
                # not the user's cancel; once more with a fresh worker
                if attempt or should_cancel() or not session.stopped_by_pool or self._closed.is_set():
                    raise
        if request_type == protocol.EXPLAIN:  # a process per question: leave the GPU to the runs
            body = dict(body, device="cpu")
        run = WorkerRun(python, body, on_message, should_cancel, request_type=request_type, on_started=on_started)
        try:
            return run.run()
        finally:
            run.detach()

    def describe(self) -> List[Dict[str, Any]]:
        """One row per live worker: its key and :meth:`WorkerSession.describe`."""
        with self._lock:
            items = list(self.sessions.items())
        rows = []
        for (python, checkpoint, device), session in items:
            if session.alive() and session.process is not None:
                rows.append(dict(python=python, checkpoint=checkpoint, device=device, **session.describe()))
        return rows

    def stop_idle(self, older_than_s: Optional[float] = None) -> int:
        """Stop the workers idle for longer than ``older_than_s`` (default ``idle_s``); how many."""
        limit = self.idle_s if older_than_s is None else older_than_s
        now = time.monotonic()
        taken = []
        with self._lock:
            for key, session in list(self.sessions.items()):
                if session.alive() and (session.state != "idle" or now - session.last_used <= limit):
                    continue
                # a request that starts meanwhile holds the session's lock: leave it alone
                if session._lock.acquire(blocking=False):
                    del self.sessions[key]
                    taken.append(session)
        for session in taken:  # outside the pool's lock: describe() (the GUI) never waits on a stop
            try:
                session.stop(f"idle for more than {limit:g} s" if limit >= 0 else "stopped by the user")
            finally:
                session._lock.release()
        return len(taken)

    def stop_idle_now(self) -> int:
        """Stop every worker not answering a request now (the dock's Stop button)."""
        return self.stop_idle(-1.0)

    def stop_all(self, reason: str = "stopped") -> None:
        """Stop every worker now (a run in progress fails as cancelled)."""
        with self._lock:
            sessions = list(self.sessions.values())
            self.sessions.clear()
        for session in sessions:
            session.stop(reason)

    def shutdown(self) -> None:
        """Plugin unload: stop every worker and accept no new one."""
        self._closed.set()
        self.stop_all("the plugin unloaded")
        if self._reaper is not None and self._reaper is not threading.current_thread():
            self._reaper.join(self.reap_every_s + 1.0)

    def _start_reaper(self) -> None:
        if self._reaper is None or not self._reaper.is_alive():
            self._reaper = threading.Thread(target=self._reap, name="rrsis-worker-reaper", daemon=True)
            self._reaper.start()

    def _reap(self) -> None:
        while not self._closed.wait(self.reap_every_s):
            try:
                self.stop_idle()
            except Exception as exc:  # never let the reaper die silently
                print(f"rrsis: stopping idle workers failed: {exc!r}", file=sys.stderr)
