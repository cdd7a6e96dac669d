"""`rrsis-geo batch` on a real local Dask cluster (2 workers on the 2 cores): the merged result
equals a serial loop of `predict`, a killed worker loses nothing and duplicates nothing, Ctrl-C
then the same command runs no finished scene again, bad scenes are recorded and skipped, STAC
ItemCollections with local and /vsicurl/ assets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest

import rrsis_geo
from rrsis_geo.batch.cluster import BLOCK_CACHE_MB_PER_SCENE, MAX_SCENES_AT_ONCE, WorkerLayout, worker_environment, worker_layout
from rrsis_geo.cpu import usable_cores
from batch_model import CALLS_ENV, DELAY_ENV, SPANS_ENV
from geo_testdata import UTM_ORIGIN, red_square_scene, write_geotiff

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def make_scenes(folder: Path, n: int, *, size: int = 32) -> list:
    """``n`` scenes of 0.5 m/px, each with its red rectangle at its own place and size."""
    folder.mkdir(parents=True, exist_ok=True)
    scenes = []
    for k in range(n):
        r0, c0 = 2 + k % 11, 3 + (k * 7) % 13
        data = red_square_scene(size, size, slice(r0, r0 + 6 + k % 5), slice(c0, c0 + 5 + k % 7))
        origin = (UTM_ORIGIN[0] + 100.0 * k, UTM_ORIGIN[1])
        scenes.append(write_geotiff(folder / f"s{k:03d}.tif", data, origin=origin, res=0.5))
    return scenes


def serial(scenes, checkpoint) -> gpd.GeoDataFrame:
    """What a loop of `predict` over the scenes gives, with each scene's name in `scene` (its
    model calls are not counted: they are not the batch run's)."""
    frames = []
    counting = os.environ.pop(CALLS_ENV, None)
    try:
        for scene in scenes:
            frame = rrsis_geo.predict(scene, ["red"], checkpoint=checkpoint, device="cpu")
            frame.insert(len(frame.columns) - 1, "scene", Path(scene).name)
            frames.append(frame)
    finally:
        if counting is not None:
            os.environ[CALLS_ENV] = counting
    return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=frames[0].crs)


def assert_same_polygons(merged_path: Path, expected: gpd.GeoDataFrame) -> None:
    merged = gpd.read_file(merged_path, layer="red", engine="pyogrio")
    assert list(merged.columns) == list(expected.columns)
    assert len(merged) == len(expected)
    for (_, got), (_, want) in zip(merged.iterrows(), expected.iterrows()):
        assert got["scene"] == want["scene"] and got["expression"] == want["expression"]
        assert got["score"] == pytest.approx(want["score"], abs=1e-6)
        assert got["area_m2"] == pytest.approx(want["area_m2"], rel=1e-9)
        assert got.geometry.equals_exact(want.geometry, 1e-9)
    assert merged.crs == expected.crs


def calls(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def batch_argv(sources, checkpoint, out: Path, run_dir: Path, *extra) -> list:
    return ["batch", *map(str, sources), "-e", "red", "--checkpoint", str(checkpoint), "--device", "cpu",
            "-o", str(out), "--run-dir", str(run_dir), "-q", *map(str, extra)]


def run_cli(argv, capsys):
    from rrsis_geo.cli import main

    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def start_cli(argv, env_extra) -> subprocess.Popen:
    env = dict(os.environ, **env_extra)
    # Ctrl-C as a terminal sends it: a suite started in the background (`cmd &` in a script) has
    # SIGINT ignored, which its children would inherit, and Python would then never raise it
    return subprocess.Popen([sys.executable, "-m", "rrsis_geo.cli", *argv], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def parts(run_dir: Path) -> list:
    """The parts renamed into place (not a worker's hidden temporary file)."""
    return [p for p in (run_dir / "parts").glob("*.gpkg") if not p.name.startswith(".")]


def wait_for_parts(run_dir: Path, n: int, process: subprocess.Popen, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while len(parts(run_dir)) < n:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no parts appeared"
        time.sleep(0.1)


def test_a_hundred_scenes_on_two_workers_equal_the_serial_run_and_resume_runs_nothing(
        worker_env, counted_checkpoint, tmp_path, capsys):
    scenes = make_scenes(tmp_path / "scenes", 100)
    out, run_dir = tmp_path / "merged.gpkg", tmp_path / "run"

    code, stdout, err = run_cli(batch_argv([tmp_path / "scenes" / "*.tif"], counted_checkpoint, out, run_dir,
                                           "--workers", 2, "--format", "fgb"), capsys)

    assert code == 0, err
    assert calls(worker_env) == 100  # one model call per scene (one tile each), none twice
    pids = {line.split()[0] for line in worker_env.read_text().splitlines()}
    assert len(pids) == 2  # both workers ran scenes
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["done"] == 100 and summary["failed"] == {} and summary["workers"] == 2
    assert "scenes: 100 | done now: 100" in stdout and f"wrote {out}" in stdout
    expected = serial(scenes, counted_checkpoint)
    assert_same_polygons(out, expected)
    assert len(gpd.read_file(out.with_suffix(".fgb"))) == len(expected)

    code, stdout, err = run_cli(batch_argv([tmp_path / "scenes" / "*.tif"], counted_checkpoint, out, run_dir,
                                           "--workers", 2), capsys)
    assert code == 0, err
    assert calls(worker_env) == 100 and "done now: 0 | done before: 100" in stdout  # resumed: nothing ran
    assert_same_polygons(out, expected)


@pytest.mark.skipif(usable_cores() < 2, reason="one scene per core: needs two cores this process may use")
def test_one_cpu_worker_runs_a_scene_per_core_at_once_with_one_model(worker_env, counted_checkpoint, tmp_path,
                                                                     capsys, monkeypatch):
    spans_file = tmp_path / "spans.txt"
    monkeypatch.setenv(SPANS_ENV, str(spans_file))
    monkeypatch.setenv(DELAY_ENV, "0.3")
    scenes = make_scenes(tmp_path / "scenes", 8)
    out, run_dir = tmp_path / "merged.gpkg", tmp_path / "run"
    code, _, err = run_cli(batch_argv([tmp_path / "scenes" / "*.tif"], counted_checkpoint, out, run_dir,
                                      "--workers", 1), capsys)
    assert code == 0, err
    spans = [line.split() for line in spans_file.read_text().splitlines()]
    assert len(spans) == 8 and len({pid for pid, *_ in spans}) == 1  # one worker process ran them all
    assert len({thread for _, thread, *_ in spans}) >= 2  # on several task threads ...
    times = sorted((float(a), float(b)) for _, _, a, b, *_ in spans)
    assert any(later[0] < earlier[1] for earlier, later in zip(times, times[1:]))  # ... at the same time
    layout = worker_layout(1, gpu=False)
    assert {(int(t), cache) for *_, t, cache in spans} == {
        (layout.torch_threads, os.environ.get("GDAL_CACHEMAX") or str(BLOCK_CACHE_MB_PER_SCENE * layout.scenes_at_once))}
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["done"] == 8 and max(json.loads(p.read_text()).get("model_loads", 0)
                                        for p in (run_dir / "scenes").glob("*.json")) == 1
    assert_same_polygons(out, serial(scenes, counted_checkpoint))


def test_worker_layout_shares_the_cores(monkeypatch):
    assert worker_layout(1, gpu=False, cores=2) == WorkerLayout(1, 2, 1)  # a scene per core, one thread each
    assert worker_layout(2, gpu=False, cores=2) == WorkerLayout(2, 1, 1)
    assert worker_layout(4, gpu=False, cores=2) == WorkerLayout(4, 1, 1)  # never less than one
    assert worker_layout(1, gpu=False, cores=16) == WorkerLayout(1, MAX_SCENES_AT_ONCE, 16 // MAX_SCENES_AT_ONCE)
    assert worker_layout(1, gpu=False, cores=2, compiled=True) == WorkerLayout(1, 1, 2)  # torch.compile: one at a time
    assert worker_layout(2, gpu=True, cores=16) == WorkerLayout(2, 1, 8)  # one scene per GPU, cores to feed it
    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    environ = worker_environment(WorkerLayout(1, 2, 1))
    assert environ["OMP_NUM_THREADS"] == "1" and "MALLOC_TRIM_THRESHOLD_" not in environ
    assert environ["GDAL_CACHEMAX"] == str(2 * BLOCK_CACHE_MB_PER_SCENE)  # one cap for the scenes at once
    assert "GDAL_CACHEMAX" not in worker_environment(WorkerLayout(1, 1, 2))  # one scene: its own cap per run
    monkeypatch.setenv("GDAL_CACHEMAX", "64")
    assert "GDAL_CACHEMAX" not in worker_environment(WorkerLayout(1, 2, 1))  # the user's, inherited, is kept


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or usable_cores() < 2,
                    reason="needs CPU affinity and two cores to tell one core from the machine")
def test_worker_layout_counts_only_the_cores_the_process_may_use():
    """Under ``taskset`` or a container's cpuset the machine's core count overstates the share."""
    script = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
              "from rrsis_geo.batch.cluster import worker_layout; print(worker_layout(1, gpu=False))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    # one scene on one thread, where os.cpu_count() would give two scenes on a core
    assert done.stdout.strip() == "WorkerLayout(workers=1, scenes_at_once=1, torch_threads=1)"


def test_the_local_cluster_listens_on_127_0_0_1_only_serves_no_pages_and_stops():
    import urllib.error
    import urllib.request

    import psutil

    from rrsis_geo.batch.cluster import open_cluster

    def http_status(port: int, path: str) -> int:
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10).status
        except urllib.error.HTTPError as exc:
            return exc.code

    with open_cluster(2) as (client, workers, _):
        info = client.scheduler_info()
        assert workers == 2 and len(info["workers"]) == 2
        addresses = [info["address"], *info["workers"], *(w["nanny"] for w in info["workers"].values())]
        assert all(a.startswith("tcp://127.0.0.1:") for a in addresses), addresses
        pids = [os.getpid(), *client.run(os.getpid).values()]
        listening = [c for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN and c.pid in pids]
        assert len(listening) >= 3 and {c.laddr.ip for c in listening} == {"127.0.0.1"}, listening
        # the HTTP servers distributed starts anyway (the scheduler's and one per worker) answer
        # nothing: no dashboard, no health or metrics, no pages about the workers
        http_ports = [info["services"]["dashboard"], *(w["services"]["dashboard"] for w in info["workers"].values())]
        assert len(http_ports) == 3 and set(http_ports) <= {c.laddr.port for c in listening}
        for port in http_ports:
            for path in ("/status", "/health", "/info/main/workers.html", "/metrics"):
                assert http_status(port, path) == 404, (port, path)
        worker_pids = pids[1:]
    deadline = time.monotonic() + 30
    while any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in worker_pids):
        assert time.monotonic() < deadline, "the cluster's workers outlived it"
        time.sleep(0.2)


def test_a_killed_worker_loses_nothing_and_duplicates_nothing(worker_env, counted_checkpoint, tmp_path):
    import psutil

    scenes = make_scenes(tmp_path / "scenes", 24)
    out, run_dir = tmp_path / "merged.gpkg", tmp_path / "run"
    process = start_cli(batch_argv([tmp_path / "scenes" / "*.tif"], counted_checkpoint, out, run_dir, "--workers", 2),
                        {DELAY_ENV: "0.3"})
    wait_for_parts(run_dir, 4, process)
    workers = [p for p in psutil.Process(process.pid).children(recursive=True)
               if "spawn_main" in " ".join(p.cmdline())]
    assert len(workers) == 2, [p.cmdline() for p in workers]
    workers[0].send_signal(signal.SIGKILL)
    stdout, stderr = process.communicate(timeout=300)

    assert process.returncode == 0, stderr
    assert "done now: 24" in stdout
    assert_same_polygons(out, serial(scenes, counted_checkpoint))  # every scene once
    assert calls(worker_env) >= 24  # the killed worker's scene ran again elsewhere


def test_ctrl_c_then_the_same_command_runs_no_finished_scene_again(worker_env, counted_checkpoint, tmp_path):
    scenes = make_scenes(tmp_path / "scenes", 24)
    out, run_dir = tmp_path / "merged.gpkg", tmp_path / "run"
    argv = batch_argv([tmp_path / "scenes" / "*.tif"], counted_checkpoint, out, run_dir, "--workers", 2)
    first = start_cli(argv, {DELAY_ENV: "0.3"})
    wait_for_parts(run_dir, 5, first)
    first.send_signal(signal.SIGINT)
    _, stderr = first.communicate(timeout=120)
    assert first.returncode == 130, stderr
    assert "interrupted" in stderr and "run the same command to resume" in stderr
    assert not out.exists()  # nothing merged yet
    finished = len(parts(run_dir))
    assert 5 <= finished < 24

    second_calls = tmp_path / "calls2.txt"
    second = start_cli(argv, {CALLS_ENV: str(second_calls)})
    stdout, stderr = second.communicate(timeout=300)
    assert second.returncode == 0, stderr
    assert calls(second_calls) == 24 - finished  # the finished scenes were not run again
    assert_same_polygons(out, serial(scenes, counted_checkpoint))


def test_bad_scenes_are_recorded_with_their_reasons_and_the_others_merged(worker_env, counted_checkpoint, tmp_path,
                                                                          capsys):
    scenes = make_scenes(tmp_path / "scenes", 6)
    corrupt = tmp_path / "scenes" / "corrupt.tif"
    corrupt.write_bytes(b"II*\x00" + os.urandom(300))
    coarse = write_geotiff(tmp_path / "scenes" / "coarse.tif", red_square_scene(32, 32, slice(4, 12), slice(4, 12)),
                           res=300.0)
    out, run_dir = tmp_path / "merged.gpkg", tmp_path / "run"
    sources = [*scenes[:3], corrupt, coarse, *scenes[3:]]

    code, stdout, err = run_cli(batch_argv(sources, counted_checkpoint, out, run_dir, "--workers", 2), capsys)

    assert code == 2
    assert "2 scene(s) failed: corrupt.tif, coarse.tif" in err and len(err.strip().splitlines()) == 1
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary["failed"]) == {"corrupt.tif", "coarse.tif"} and summary["done"] == 6
    assert "300 m/px" in summary["failed"]["coarse.tif"] and "corrupt.tif" in summary["failed"]["corrupt.tif"]
    assert all("\n" not in reason for reason in summary["failed"].values())
    assert "failed coarse.tif: 'red' needs a scene of 1 m/px or finer" in stdout
    assert_same_polygons(out, serial(scenes, counted_checkpoint))

    code, _, err = run_cli(batch_argv(sources, counted_checkpoint, out, run_dir, "--workers", 2, "--fail-fast"),
                           capsys)
    assert code == 2 and "failed" in err  # retried, failed again; the merged result stays


def test_a_stac_item_collection_with_local_and_vsicurl_assets(worker_env, counted_checkpoint, tmp_path, capsys):
    from fault_testdata import FlakyServer

    local, remote = make_scenes(tmp_path / "scenes", 2)
    with FlakyServer(remote, safe_bytes=1 << 30, drops=0) as server:
        items = [_item("local", "scenes/" + local.name), _item("remote", server.http_url)]
        stac = tmp_path / "items.json"
        stac.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
        out, run_dir = tmp_path / "merged.gpkg", tmp_path / "run"
        code, stdout, err = run_cli(batch_argv([stac], counted_checkpoint, out, run_dir, "--workers", 1,
                                               "--asset", "image", "--format", "parquet"), capsys)
        assert code == 0, err
        assert server.requests > 0
    merged = gpd.read_file(out, layer="red", engine="pyogrio")
    assert set(merged["scene"]) == {local.name, remote.name}
    table = gpd.read_parquet(out.with_suffix(".parquet"))
    assert len(table) == len(merged) and table.crs == merged.crs
    code, _, err = run_cli(batch_argv([stac], counted_checkpoint, tmp_path / "x.gpkg", tmp_path / "run2",
                                      "--asset", "visual"), capsys)
    assert code == 2 and "has no asset 'visual'" in err and "--asset" in err


def _item(item_id: str, href: str) -> dict:
    return {
        "type": "Feature", "stac_version": "1.0.0", "id": item_id, "properties": {"datetime": "2026-01-01T00:00:00Z"},
        "geometry": {"type": "Point", "coordinates": [57.0, 25.0]}, "bbox": [57.0, 25.0, 57.0, 25.0], "links": [],
        "assets": {"image": {"href": href, "type": "image/tiff; application=geotiff"}},
    }
