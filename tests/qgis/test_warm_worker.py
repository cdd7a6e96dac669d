"""The warm worker (issue 23): one worker process answers many requests, its model loaded once;
cancel stops a run, not the worker; a dead worker is replaced; idle workers stop; a worker that
speaks only protocol 1 is driven one request per process."""

import os
import signal
import stat
import sys
import textwrap
import threading
import time

import pytest

from plugin_test_helpers import write_scene
from rrsis_qgis import protocol
from rrsis_qgis.warm_worker import WorkerPool, memory_bytes
from rrsis_qgis.worker_client import WorkerCancelled, WorkerCrashed


def _run_body(scene, output, checkpoint, **extra):
    return {"scene": str(scene), "expressions": ["bright square"], "output": str(output),
            "checkpoint": str(checkpoint), **extra}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def pool():
    pool = WorkerPool()
    yield pool
    pool.shutdown()


@pytest.mark.slow
def test_one_worker_answers_runs_and_hints_with_the_model_loaded_once(pool, tmp_path, bright_checkpoint):
    scene = write_scene(tmp_path / "scene.tif")
    key = (sys.executable, str(bright_checkpoint), "cpu")
    seen = []

    started = time.monotonic()
    first = pool.request(*key, protocol.RUN, _run_body(scene, tmp_path / "a.gpkg", bright_checkpoint, device="cpu"),
                         seen.append)
    first_s = time.monotonic() - started
    (session,) = pool.sessions.values()
    pid = session.pid

    started = time.monotonic()
    second = pool.request(*key, protocol.RUN, _run_body(scene, tmp_path / "b.gpkg", bright_checkpoint, device="cpu"))
    second_s = time.monotonic() - started
    hint = pool.request(*key, protocol.EXPLAIN, {"expressions": ["houses"], "checkpoint": str(bright_checkpoint),
                                                  "device": "cpu"})

    assert first["count"] == second["count"] == 1
    assert (tmp_path / "a.gpkg").is_file() and (tmp_path / "b.gpkg").is_file()
    assert first["model_loads"] == second["model_loads"] == hint["model_loads"] == 1  # loaded once
    assert session.pid == pid and _alive(pid) and pool.started == 1 and session.requests == 3
    assert second_s < first_s / 2, (first_s, second_s)  # no interpreter start, no torch import, no load
    assert seen[0]["type"] == "hello" and seen[0]["protocol"] == protocol.PROTOCOL_VERSION
    assert {m.get("id") for m in seen[1:]} == {1}  # every message names its request
    (row,) = pool.describe()
    assert row["state"] == "idle" and row["pid"] == pid and row["requests"] == 3
    assert row["memory"] is None or row["memory"] > 50 * 2**20

    pool.shutdown()
    assert session.returncode == 0  # asked to stop, it stopped by itself
    assert not _alive(pid) and pool.describe() == []


@pytest.mark.slow
def test_cancel_stops_the_run_not_the_worker(pool, tmp_path, slow_checkpoint):
    big = write_scene(tmp_path / "big.tif", size=512)
    key = (sys.executable, str(slow_checkpoint), "cpu")
    progressed = threading.Event()
    (tmp_path / "out").mkdir()

    def on_message(msg):
        if msg.get("type") == protocol.PROGRESS and msg.get("done"):
            progressed.set()

    with pytest.raises(WorkerCancelled):
        pool.request(*key, protocol.RUN, _run_body(big, tmp_path / "out" / "x.gpkg", slow_checkpoint, device="cpu"),
                     on_message, progressed.is_set)
    (session,) = pool.sessions.values()
    assert session.alive() and _alive(session.pid) and session.state == "idle"
    assert list((tmp_path / "out").iterdir()) == []  # nothing written, no temporary file left

    small = write_scene(tmp_path / "small.tif")
    result = pool.request(*key, protocol.RUN, _run_body(small, tmp_path / "ok.gpkg", slow_checkpoint, device="cpu"))
    assert result["count"] == 1 and result["model_loads"] == 1 and pool.started == 1


@pytest.mark.slow
def test_a_worker_that_dies_is_reported_and_the_next_request_starts_a_fresh_one(pool, tmp_path, slow_checkpoint):
    big = write_scene(tmp_path / "big.tif", size=512)
    key = (sys.executable, str(slow_checkpoint), "cpu")
    killed = []

    def kill_at_first_tile(msg):
        if msg.get("type") == protocol.PROGRESS and msg.get("done") and not killed:
            session = pool.sessions[key]
            killed.append(session.pid)
            os.kill(session.pid, signal.SIGKILL)

    with pytest.raises(WorkerCrashed, match="SIGKILL"):
        pool.request(*key, protocol.RUN, _run_body(big, tmp_path / "x.gpkg", slow_checkpoint, device="cpu"),
                     kill_at_first_tile)
    small = write_scene(tmp_path / "small.tif")
    result = pool.request(*key, protocol.RUN, _run_body(small, tmp_path / "ok.gpkg", slow_checkpoint, device="cpu"))
    assert result["count"] == 1 and pool.started == 2 and pool.sessions[key].pid != killed[0]


@pytest.mark.slow
def test_an_idle_worker_stops_and_gives_its_memory_back(tmp_path, bright_checkpoint):
    pool = WorkerPool(idle_s=0.5, reap_every_s=0.2)
    try:
        pool.request(sys.executable, str(bright_checkpoint), "cpu", protocol.EXPLAIN,
                     {"expressions": ["water"], "checkpoint": str(bright_checkpoint), "device": "cpu"})
        (session,) = pool.sessions.values()
        assert memory_bytes(session.pid)
        deadline = time.monotonic() + 20
        while session.returncode is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pool.sessions == {} and session.state == "stopped" and "idle" in session.stop_reason
        assert session.returncode == 0 and not _alive(session.pid)
    finally:
        pool.shutdown()


def _fake_python(tmp_path, body: str) -> str:
    path = tmp_path / "fake-python"
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_a_worker_that_speaks_only_protocol_1_runs_one_request_per_process(pool, tmp_path):
    starts = tmp_path / "starts"
    python = _fake_python(tmp_path, f"""\
        echo start >> {starts}
        echo '{{"type":"hello","protocol":1}}'
        read request
        case "$request" in *'"protocol":1'*) ;; *) echo '{{"type":"error","kind":"protocol","text":"v1 only"}}'; exit 2;; esac
        echo '{{"type":"result","output":"out.gpkg","layers":[],"count":0}}'
    """)
    for _ in range(2):
        result = pool.request(python, "", "cpu", protocol.RUN, {"scene": "s.tif", "expressions": ["x"], "output": "o"})
        assert result["output"] == "out.gpkg"
    assert python in pool.one_shot
    # one probe of the session (refused by its hello), then one process per request
    assert starts.read_text().count("start") == 3


def test_answers_to_other_requests_are_skipped_and_unknown_messages_passed_on(pool, tmp_path):
    python = _fake_python(tmp_path, """\
        echo '{"type":"hello","protocol":2,"sessions":true}'
        read request
        echo '{"type":"progress","id":0,"done":1,"total":1}'
        echo '{"type":"scale_plan","id":1,"text":"x"}'
        echo '{"type":"result","id":1,"output":"a.gpkg","count":0}'
        read request
        echo '{"type":"error","id":2,"kind":"input","text":"no such scene"}'
        read request
    """)
    seen = []
    assert pool.request(python, "", "cpu", protocol.RUN, {"scene": "a"}, seen.append)["output"] == "a.gpkg"
    assert [m["type"] for m in seen] == ["hello", "scale_plan", "result"]
    with pytest.raises(Exception, match="no such scene"):
        pool.request(python, "", "cpu", protocol.RUN, {"scene": "b"})
    assert pool.started == 1


def _cancelling_worker(tmp_path, after_cancel: str) -> str:
    return _fake_python(tmp_path, f"""\
        echo '{{"type":"hello","protocol":2,"sessions":true}}'
        read request
        echo '{{"type":"progress","id":1,"done":1,"total":9}}'
        read cancel
        {after_cancel}
        read next
    """)


def test_a_worker_that_says_it_is_stopping_is_given_time(tmp_path):
    from rrsis_qgis.warm_worker import WorkerSession

    python = _cancelling_worker(tmp_path, """\
        for i in 1 2 3; do echo '{"type":"cancelling","id":1}'; sleep 1; done
        echo '{"type":"error","id":1,"kind":"cancelled","text":"cancelled; nothing was written"}'""")
    session = WorkerSession(python, cancel_grace_s=1.5)
    seen = []
    try:
        with pytest.raises(WorkerCancelled, match="nothing was written"):
            session.request(protocol.RUN, {"scene": "a"}, seen.append, lambda: bool(seen))
        assert session.alive() and session.state == "idle"  # 3 s of winding down, never silent 1.5 s
        assert [m["type"] for m in seen].count("cancelling") == 3
    finally:
        session.stop()


def test_a_silent_worker_is_killed_after_the_grace_period(tmp_path):
    from rrsis_qgis.warm_worker import WorkerSession

    python = _cancelling_worker(tmp_path, "sleep 30")
    session = WorkerSession(python, cancel_grace_s=1.5)
    seen = []
    started = time.monotonic()
    with pytest.raises(WorkerCancelled, match="did not stop in time"):
        session.request(protocol.RUN, {"scene": "a"}, seen.append, lambda: bool(seen))
    assert time.monotonic() - started < 10
    assert not session.alive() and session.returncode is not None
