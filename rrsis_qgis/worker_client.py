"""The plugin's side of the worker: start it, send the job, read its messages, cancel, kill.

Used from a ``QgsTask`` thread (the dock) and from Processing (any thread): it needs no Qt event
loop, only :mod:`subprocess` and two reader threads. Nothing here imports the library but its
standard-library-only error types (:class:`rrsis_geo.errors.Fix`).

A run ends in exactly one of: the worker's ``result`` (returned), or a :class:`WorkerFailure`
(:class:`WorkerCancelled` when the user cancelled; :class:`WorkerCrashed` when the worker died
without saying why: killed, segfault, out of memory). A crash never reaches QGIS's process.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import tempfile
import threading
import time
from collections import deque
from typing import IO, Any, Callable, Deque, Dict, List, Optional, Tuple, Union

from rrsis_geo.errors import Fix

from . import protocol
from .paths import PLUGIN_DIR

#: Seconds a cancelled worker gets to stop between batches and clean up before it is killed.
GRACE_S = 10.0
#: Lines of the worker's stderr kept for crash reports.
STDERR_LINES = 40

MessageFn = Callable[[Dict[str, Any]], None]


class WorkerFailure(Exception):
    """The run did not produce a result; ``kind`` is a :data:`protocol.ERROR_KINDS` value or
    ``start`` / ``crash``; ``detail`` holds a traceback or the worker's last stderr lines."""

    def __init__(self, kind: str, text: str, detail: str = "", fix: Optional[Fix] = None) -> None:
        super().__init__(text)
        self.kind = kind
        self.detail = detail
        self.fix = fix  # the option that fixes it (the library's, as data): each front end words it

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class WorkerCancelled(WorkerFailure):
    """The user cancelled; the worker stopped (or was killed) and wrote nothing."""

    def __init__(self, text: str = "cancelled; nothing was written") -> None:
        super().__init__("cancelled", text)


class WorkerCrashed(WorkerFailure):
    """The worker died without an ``error`` message."""

    def __init__(self, text: str, detail: str = "") -> None:
        super().__init__("crash", text, detail)


def worker_argv(python: str, *, probe: bool = False) -> List[str]:
    """The command line that starts the worker with ``python``."""
    return [python, "-m", "rrsis_qgis.worker"] + (["--probe"] if probe else [])


#: Extra ``PYTHONPATH`` entries for the worker (os.pathsep-separated), e.g. where the modules
#: named in ``$RRSIS_EXTENSIONS`` live.
EXTRA_PATH_ENV = "RRSIS_WORKER_PATH"


def worker_env(base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The worker's environment: ``PYTHONPATH`` is the plugin's parent folder (+ ``$RRSIS_WORKER_PATH``).

    That folder holds ``rrsis_qgis`` (the worker module; its ``libs/`` carries the bundled
    library). QGIS's own ``PYTHONPATH``/``PYTHONHOME`` (set by the Windows and macOS builds for
    their Python) are not passed on: they would point another interpreter at packages built
    for a different Python.
    """
    env = dict(os.environ if base is None else base)
    env.pop("PYTHONHOME", None)
    extra = env.get(EXTRA_PATH_ENV, "")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PLUGIN_DIR.parent), extra) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("PYTHONIOENCODING", "utf-8")
    return env


def _popen(argv: List[str], **kwargs: Any) -> subprocess.Popen:
    try:
        return subprocess.Popen(
            argv,
            env=worker_env(),
            cwd=tempfile.gettempdir(),  # never in the user's project folder
            creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0),  # no console window on Windows
            # its own process group: a kill reaches whatever the worker started, and a Ctrl-C
            # in the terminal QGIS runs from is QGIS's business, not the worker's
            start_new_session=os.name == "posix",
            **kwargs,
        )
    except OSError as exc:
        raise WorkerFailure("start", f"cannot start the worker Python {argv[0]}: {exc.strerror or exc}") from exc


def describe_exit(code: int) -> str:
    """``-11`` -> ``killed by signal 11 (SIGSEGV)``; ``3`` -> ``exit status 3``."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown signal"
        return f"killed by signal {-code} ({name})"
    return f"exit status {code}"


def probe(python: str, timeout: float = 120.0) -> Dict[str, Any]:
    """The ``hello`` of ``python -m rrsis_qgis.worker --probe``: versions, devices, what is missing."""
    process = _popen(worker_argv(python, probe=True), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise WorkerFailure("start", f"{python} did not answer within {timeout:.0f} s") from None
    for line in out.decode("utf-8", "replace").splitlines():
        try:
            msg = protocol.decode(line)
        except protocol.ProtocolError:
            continue
        problem = protocol.check_hello(msg)
        if problem:
            raise WorkerFailure("protocol", problem)
        return msg
    tail = err.decode("utf-8", "replace").strip().splitlines()[-3:]
    why = protocol.one_line(" | ".join(tail)) if tail else describe_exit(process.returncode)
    raise WorkerFailure("start", f"{python} cannot run the rrsis worker: {why}")


class WorkerProcess:
    """A worker process and its pipes: stdout lines queued by a reader thread, the last lines of
    stderr kept for crash reports; killed with its process group."""

    def __init__(self, python: str) -> None:
        self.python = python
        self.process: Optional[subprocess.Popen] = None
        self.hello: Optional[Dict[str, Any]] = None
        self.stderr_tail: Deque[str] = deque(maxlen=STDERR_LINES)
        self._lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self._readers: List[threading.Thread] = []

    @property
    def pid(self) -> Optional[int]:
        return self.process.pid if self.process is not None else None

    @property
    def returncode(self) -> Optional[int]:
        """The worker's exit status once it ended (130: stopped on request; negative: a signal)."""
        return self.process.returncode if self.process is not None else None

    def _read_stdout(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            self._lines.put(raw.decode("utf-8", "replace"))
        self._lines.put(None)

    def _read_stderr(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            self.stderr_tail.append(raw.decode("utf-8", "replace").rstrip())

    def _start(self) -> None:
        self.process = _popen(
            worker_argv(self.python), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for target, stream in ((self._read_stdout, self.process.stdout), (self._read_stderr, self.process.stderr)):
            reader = threading.Thread(target=target, args=(stream,), name="rrsis-worker-pipe", daemon=True)
            reader.start()
            self._readers.append(reader)

    def _next_message(self, timeout: float = 0.1) -> Union[Dict[str, Any], None, bool]:
        """The next message; None once stdout closed; False when none came within ``timeout``."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            return False
        if line is None:
            self._lines.put(None)  # stays closed for later readers
            return None
        try:
            return protocol.decode(line)
        except protocol.ProtocolError:
            self.stderr_tail.append(line.rstrip())  # stray output: kept for diagnosis
            return False

    def _write(self, msg: Dict[str, Any]) -> None:
        try:
            self.process.stdin.write(protocol.encode(msg).encode("utf-8"))
            self.process.stdin.flush()  # stdin stays open: closing it asks the worker to stop
        except (OSError, ValueError):
            pass  # the worker died already; its exit status tells why

    def _close(self) -> None:
        """Never leave a worker or its pipes behind (also after an error on our side)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.kill()
            self.process.wait()
        try:
            self.process.stdin.close()
        except OSError:
            pass
        for reader, stream in zip(self._readers, (self.process.stdout, self.process.stderr)):
            reader.join(2.0)
            # a grandchild of the worker may still hold the pipe: closing it under a blocked
            # reader would wait for that grandchild, so such a pipe is left to its daemon reader
            if not reader.is_alive():
                stream.close()

    def kill(self) -> None:
        """Kill the worker and its process group at once (no clean-up: the last resort)."""
        if self.process is None or self.process.poll() is not None:
            return
        if os.name == "posix":
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
                return
            except OSError:
                pass
        self.process.kill()

    def _accept_hello(self, msg: Dict[str, Any]) -> None:
        """Keep the worker's ``hello``; :class:`WorkerFailure` (``protocol``) when the plugin cannot
        talk to it (the caller ends the process)."""
        problem = protocol.check_hello(msg)
        if problem:
            raise WorkerFailure("protocol", problem)
        self.hello = msg

    def _crashed(self, code: int) -> "WorkerCrashed":
        detail = "\n".join(self.stderr_tail)
        last = next((line for line in reversed(self.stderr_tail) if line.strip()), "")
        text = f"the rrsis worker ({self.python}) stopped unexpectedly: {describe_exit(code)}"
        if last:
            text += f"; its last words: {protocol.one_line(last, 200)}"
        return WorkerCrashed(text, detail)


def _failure(error: Dict[str, Any]) -> WorkerFailure:
    """The exception for a worker's ``error`` message."""
    if error.get("kind") == "cancelled":
        return WorkerCancelled(str(error.get("text") or "cancelled; nothing was written"))
    return WorkerFailure(str(error.get("kind") or "internal"), str(error.get("text") or ""),
                         str(error.get("detail") or ""), Fix.from_dict(error.get("fix")))


class WorkerRun(WorkerProcess):
    """One job in one worker process (see module docstring; protocol 1, which every worker
    speaks: Processing runs this way, and the dock with a worker that knows no sessions).

    ``on_message`` sees every message the worker sends (on the calling thread);
    ``should_cancel`` is polled ten times a second; ``on_started(self)`` is called once the
    worker process runs.
    """

    def __init__(
        self,
        python: str,
        request: Dict[str, Any],
        on_message: Optional[MessageFn] = None,
        should_cancel: Optional[Callable[[], bool]] = None,
        grace_s: float = GRACE_S,
        request_type: str = protocol.RUN,
        on_started: Optional[Callable[["WorkerRun"], None]] = None,
    ) -> None:
        super().__init__(python)
        self.request = protocol.message(request_type, protocol=protocol.ONE_SHOT, **request)
        self.on_message = on_message or (lambda msg: None)
        self.should_cancel = should_cancel or (lambda: False)
        self.on_started = on_started or (lambda run: None)
        self.grace_s = grace_s
        self._cancel_deadline: Optional[float] = None

    def detach(self) -> None:
        """Drop the callbacks once the run is over (they usually hold the caller: a cycle)."""
        self.on_message = lambda msg: None
        self.should_cancel = lambda: False
        self.on_started = lambda run: None

    def _send_request(self) -> None:
        self._write(self.request)

    def cancel(self) -> None:
        """Ask the worker to stop (stdin closed + SIGTERM); it is killed after the grace period."""
        if self.process is None or self._cancel_deadline is not None:
            return
        self._cancel_deadline = time.monotonic() + self.grace_s
        try:
            self.process.stdin.close()
        except OSError:
            pass
        if os.name == "posix" and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # on Windows closing stdin is the polite way

    def _kill_if_overdue(self) -> None:
        if self._cancel_deadline is not None and time.monotonic() > self._cancel_deadline:
            self.kill()

    # ---- the run -------------------------------------------------------------------------
    def run(self) -> Dict[str, Any]:
        """Run the job to its end; the ``result`` message, else :class:`WorkerFailure`."""
        self._start()
        self.on_started(self)
        result: Optional[Dict[str, Any]] = None
        error: Optional[Dict[str, Any]] = None
        try:
            while True:
                if self.should_cancel():
                    self.cancel()
                self._kill_if_overdue()
                msg = self._next_message()
                if msg is False:
                    continue
                if msg is None:
                    break
                if self.hello is None:
                    self._greet(msg)
                elif msg["type"] == protocol.RESULT:
                    result = msg
                elif msg["type"] == protocol.ERROR:
                    error = msg
                self.on_message(msg)
            code = self._wait()
        finally:
            self._close()
        return self._outcome(code, result, error)

    def _greet(self, msg: Dict[str, Any]) -> None:
        try:
            self._accept_hello(msg)
        except WorkerFailure:
            self.kill()
            raise
        self._send_request()

    def _wait(self) -> int:
        """The exit status, once stdout is closed (a worker that lingers is killed)."""
        deadline = time.monotonic() + self.grace_s
        while self.process.poll() is None:
            if self.should_cancel():
                self.cancel()
            if time.monotonic() > deadline:
                self.kill()
            time.sleep(0.05)
        return self.process.returncode

    def _outcome(self, code: int, result: Optional[Dict[str, Any]], error: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        if result is not None and code == 0:
            return result
        if error is not None:
            raise _failure(error)
        if self._cancel_deadline is not None:
            raise WorkerCancelled("cancelled; the worker was stopped")
        raise self._crashed(code)


def explain_collector() -> Tuple[Dict[str, Any], MessageFn]:
    """``(answer, on_message)``: the messages of an ``explain`` request gathered into
    ``{"knowledge": <knowledge message or None>, "explanations": {asked: <explanation>}}``."""
    answer: Dict[str, Any] = {"knowledge": None, "explanations": {}}

    def collect(msg: Dict[str, Any]) -> None:
        if msg.get("type") == protocol.KNOWLEDGE:
            answer["knowledge"] = msg
        elif msg.get("type") == protocol.EXPLANATION:
            answer["explanations"][str(msg.get("asked") or msg.get("expression"))] = msg

    return answer, collect
