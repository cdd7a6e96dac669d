"""The worker protocol and client: messages, version check, crashes, the library's errors."""

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from plugin_test_helpers import LIBRARY_ALLOWED, truncated_scene, write_scene
from rrsis_qgis import protocol
from rrsis_qgis.warm_worker import WorkerPool
from rrsis_qgis.worker_client import WorkerCrashed, WorkerFailure, WorkerRun, describe_exit, explain_collector, probe

REPO = Path(__file__).resolve().parents[2]

REQUEST = {"scene": "scene.tif", "expressions": ["water"], "output": "out.gpkg"}


def _fake_python(tmp_path, body: str) -> str:
    """An executable standing in for a Python that runs a misbehaving worker."""
    path = tmp_path / "fake-python"
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_messages_round_trip_and_unknown_fields_are_kept():
    msg = protocol.message(protocol.PROGRESS, done=3, total=9, message="tile 3/9", scale_plan={"water": 2.0}, skip=None)
    line = protocol.encode(msg)
    assert line.endswith("\n") and line.count("\n") == 1
    assert protocol.decode(line) == {"type": "progress", "done": 3, "total": 9, "message": "tile 3/9", "scale_plan": {"water": 2.0}}
    for bad in ("not json", "[1, 2]", '{"no": "type"}'):
        with pytest.raises(protocol.ProtocolError):
            protocol.decode(bad)
    assert protocol.one_line("a\n  b\tc") == "a b c"
    assert "protocol 99" in protocol.check_hello({"type": "hello", "protocol": 99})
    assert protocol.check_hello({"type": "hello", "protocol": protocol.PROTOCOL_VERSION}) is None


def test_a_worker_of_another_protocol_version_is_refused(tmp_path):
    python = _fake_python(tmp_path, """\
        echo '{"type":"hello","protocol":99}'
        sleep 30
    """)
    with pytest.raises(WorkerFailure, match="protocol 99") as caught:
        WorkerRun(python, REQUEST).run()
    assert caught.value.kind == "protocol"


def test_unknown_messages_are_passed_on_and_a_result_ends_the_run(tmp_path):
    python = _fake_python(tmp_path, f"""\
        echo '{{"type":"hello","protocol":{protocol.PROTOCOL_VERSION}}}'
        read request
        echo 'stray text from a library'
        echo '{{"type":"scale_plan","text":"water at 2x"}}'
        echo '{{"type":"result","output":"out.gpkg","layers":[],"count":0}}'
    """)
    seen = []
    result = WorkerRun(python, REQUEST, seen.append).run()
    assert result["output"] == "out.gpkg"
    assert [m["type"] for m in seen] == ["hello", "scale_plan", "result"]


def test_a_crashing_worker_is_reported_with_its_last_words(tmp_path):
    python = _fake_python(tmp_path, f"""\
        echo '{{"type":"hello","protocol":{protocol.PROTOCOL_VERSION}}}'
        read request
        echo '{{"type":"progress","done":1,"total":9}}'
        echo 'free(): invalid pointer' >&2
        kill -SEGV $$
    """)
    with pytest.raises(WorkerCrashed) as caught:
        WorkerRun(python, REQUEST).run()
    text = str(caught.value)
    assert "stopped unexpectedly" in text and "SIGSEGV" in text and "free(): invalid pointer" in text
    assert describe_exit(3) == "exit status 3"


def test_a_missing_interpreter_is_a_start_error(tmp_path):
    with pytest.raises(WorkerFailure, match="cannot start the worker Python") as caught:
        WorkerRun(str(tmp_path / "no-python"), REQUEST).run()
    assert caught.value.kind == "start"


@pytest.mark.slow
def test_the_real_worker_reports_a_library_error_in_one_line(tmp_path, bright_checkpoint):
    hello = probe(sys.executable)
    assert hello["protocol"] == protocol.PROTOCOL_VERSION and hello["missing"] == []
    request = dict(REQUEST, scene=str(tmp_path / "missing.tif"), output=str(tmp_path / "out.gpkg"), checkpoint=str(bright_checkpoint))
    seen = []
    with pytest.raises(WorkerFailure) as caught:
        WorkerRun(sys.executable, request, seen.append).run()
    assert caught.value.kind == "input"
    assert "missing.tif" in str(caught.value) and "\n" not in str(caught.value)
    assert seen[0]["type"] == "hello" and seen[-1]["type"] == "error"
    assert list(tmp_path.iterdir()) == []


def test_loading_and_using_the_plugin_imports_no_library_or_gis_wheel(tmp_path):
    """In a fresh QGIS-hosting process: the plugin, its dock, task and algorithm, the probe. Of
    the library, only its standard-library-only modules (the options schema, errors, config)."""
    script = textwrap.dedent("""
        import sys
        from qgis.core import QgsApplication
        app = QgsApplication([], True, sys.argv[1]); app.initQgis()
        import rrsis_qgis
        from rrsis_qgis import dock, task, layers, deps, devices, worker_client
        from rrsis_qgis.processing import algorithm
        plugin = rrsis_qgis.classFactory(None); plugin.initProcessing()
        hello = worker_client.probe(sys.executable)
        forbidden = ("torch", "rasterio", "shapely", "pyogrio", "geopandas", "pyproj", "rrsis_geo", "numpy")
        allowed = set(sys.argv[2].split(","))
        print(sorted(m for m in sys.modules if m.split(".")[0] in forbidden and m not in allowed), hello["type"])
        sys.stdout.flush()
        import os; os._exit(0)
    """)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path), ",".join(LIBRARY_ALLOWED)], env=env,
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[] hello"


DEFAULT_MODEL = REPO / "resources" / "models" / "default"


def explain(python: str, expressions, checkpoint=None) -> dict:
    """What the dock's hints do: an ``explain`` request to a (warm) worker, the answer gathered."""
    answer, collect = explain_collector()
    pool = WorkerPool()
    try:
        pool.request(python, checkpoint or "", "cpu", protocol.EXPLAIN,
                     {"expressions": list(expressions), "checkpoint": checkpoint, "device": "cpu"}, collect)
    finally:
        pool.shutdown()
    return answer


def test_an_older_worker_that_knows_only_run_refuses_explain_as_a_protocol_error(tmp_path):
    python = _fake_python(tmp_path, f"""\
        echo '{{"type":"hello","protocol":{protocol.PROTOCOL_VERSION}}}'
        read request
        echo '{{"type":"error","kind":"protocol","text":"expected a run request"}}'
        exit 2
    """)
    with pytest.raises(WorkerFailure) as caught:
        explain(python, ["houses"])
    assert caught.value.kind == "protocol"


@pytest.mark.slow
def test_the_real_worker_explains_expressions_with_their_scale():
    assert DEFAULT_MODEL.is_dir(), f"the default model {DEFAULT_MODEL}, which ships with the repository, is missing"
    answer = explain(sys.executable, ["houses", "parked cars", "solar panels"], str(DEFAULT_MODEL))
    knowledge = answer["knowledge"]
    assert "unpaved land" in knowledge["known_phrasings"] and "building" in knowledge["phrasings"]
    explanations = answer["explanations"]
    houses, cars, panels = (explanations[e] for e in ("houses", "parked cars", "solar panels"))
    assert houses["known"] is True and houses["categories"] == ["building"]
    assert houses["text"].startswith("'houses' understood as building (nearest: 'buildings' 0.67")
    assert houses["text"].endswith("runs at 1.5 m/px") and houses["gsd_m"] == 1.5
    assert cars["categories"] == ["car"] and cars["text"].endswith("runs at 0.172 m/px")
    assert panels["known"] is False and "far from anything this model learned" in panels["text"]


def _run_messages(request):
    seen = []
    try:
        result = WorkerRun(sys.executable, request, seen.append).run()
    except WorkerFailure as exc:
        result = exc
    return result, seen


@pytest.mark.slow
def test_a_run_sends_one_plan_per_expression_before_any_tile_and_warns_about_unknown_words(tmp_path, bright_checkpoint):
    scene = write_scene(tmp_path / "scene.tif")
    request = dict(REQUEST, scene=str(scene), output=str(tmp_path / "out.gpkg"), checkpoint=str(bright_checkpoint),
                   expressions=["bright building", "zzqx"])
    result, seen = _run_messages(request)
    assert result["count"] >= 1
    types = [m["type"] for m in seen]
    plans = [m for m in seen if m["type"] == "plan" and m.get("expression")]
    assert [p["expression"] for p in plans] == ["bright building", "zzqx"]
    first_tile = next(i for i, m in enumerate(seen) if m["type"] == "progress" and m.get("total"))
    assert max(types.index("plan"), seen.index(plans[-1])) < first_tile
    assert "understood as building" in plans[0]["text"] and plans[0]["passes"][0]["tiles"] >= 1
    assert plans[1]["known"] is False
    (vocabulary,) = [m for m in seen if m["type"] == "warning" and m.get("category") == "vocabulary"]
    assert vocabulary["expression"] == "zzqx" and "zzqx" in vocabulary["text"]


@pytest.mark.slow
def test_a_truncated_geotiff_is_an_input_error_or_skipped_with_a_warning(tmp_path, bright_checkpoint):
    cut = truncated_scene(tmp_path / "cut.tif")
    out = tmp_path / "out"
    out.mkdir()
    request = dict(REQUEST, scene=str(cut), output=str(out / "o.gpkg"), checkpoint=str(bright_checkpoint))
    failure, _ = _run_messages(request)
    assert isinstance(failure, WorkerFailure) and failure.kind == "input"
    assert "cannot read" in str(failure) and "cut.tif" in str(failure) and "\n" not in str(failure)
    assert list(out.iterdir()) == []
    result, seen = _run_messages(dict(request, on_read_error="skip"))
    assert result["count"] >= 1 and (out / "o.gpkg").is_file()
    assert any("unreadable pixel window(s) were treated as nodata" in m.get("text", "") for m in seen if m["type"] == "warning")


@pytest.mark.slow
def test_a_scene_far_too_coarse_is_refused_in_seconds_unless_forced(tmp_path):
    assert DEFAULT_MODEL.is_dir(), f"the default model {DEFAULT_MODEL}, which ships with the repository, is missing"
    coarse = write_scene(tmp_path / "coarse.tif", size=64, pixel=300.0)
    request = dict(REQUEST, scene=str(coarse), output=str(tmp_path / "o.gpkg"), checkpoint=str(DEFAULT_MODEL))
    failure, seen = _run_messages(request)
    assert isinstance(failure, WorkerFailure) and failure.kind == "input"
    assert "coarse.tif has 300 m/px" in str(failure)
    assert not any(m["type"] == "progress" and m.get("total") for m in seen)
    bad, _ = _run_messages(dict(request, on_read_error="retry"))
    assert isinstance(bad, WorkerFailure) and bad.kind == "input" and "on_read_error" in str(bad)
