"""The plugin in the real QGIS binaries: ``qgis.bin`` under Xvfb and ``qgis_process.bin``.

The python-hosted tests cannot see what crashed the desktop (pip's GEOS/GDAL loaded into the
QGIS executable next to QGIS's own); these run the plugin as users get it: the zip built by
scripts/package_plugin.py, installed into a throw-away profile, with the worker on the test
interpreter (``$RRSIS_PYTHON``) and the bundled default model on the sample scene.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "resources" / "sample" / "dubai_sample.tif"
SESSION_SCRIPT = Path(__file__).with_name("desktop_session.py")
SCREENSHOT = REPO / "build" / "screenshots" / "qgis_desktop_dock.png"
VEHICLE_SAMPLE = REPO / "resources" / "sample" / "munich_street_sample.tif"
VEHICLES_SCREENSHOT = REPO / "build" / "screenshots" / "qgis_desktop_vehicles.png"

pytestmark = pytest.mark.slow


def _binary(name: str) -> str:
    """The binary's path (conftest.py fails the run when one of them is missing)."""
    path = shutil.which(name)
    assert path is not None, f"{name} is not installed (apt-get install qgis; scripts/setup.sh does it as root on Debian)"
    return path


@pytest.fixture(scope="module")
def plugin_zip(tmp_path_factory) -> Path:
    """The plugin zip, built and checked by scripts/package_plugin.py."""
    assert SAMPLE.is_file(), f"the sample scene {SAMPLE}, which ships with the repository, is missing"
    spec = importlib.util.spec_from_file_location("package_plugin", REPO / "scripts" / "package_plugin.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    output = tmp_path_factory.mktemp("zip") / "rrsis_qgis.zip"
    assert module.main(["-o", str(output)]) == 0
    return output


def _install(plugin_zip: Path, profile: Path) -> Path:
    """Unpack the zip into ``profile`` and enable the plugin there, as the plugin manager does."""
    spec = importlib.util.spec_from_file_location("package_plugin", REPO / "scripts" / "package_plugin.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    installed = module.install(plugin_zip, profile / "python" / "plugins")
    ini = profile / "QGIS" / "QGIS3.ini"
    ini.parent.mkdir(parents=True, exist_ok=True)
    ini.write_text("[PythonPlugins]\nrrsis_qgis=true\n\n[qgis]\ncheckVersion=false\nshowTips=false\n")
    return installed


def _env(tmp: Path) -> dict:
    """QGIS's environment: the worker on this interpreter; nothing of this checkout on sys.path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RRSIS_EXTENSIONS", "RRSIS_WORKER_PATH", "QT_QPA_PLATFORM")}
    env.update(RRSIS_PYTHON=sys.executable, TMPDIR=str(tmp), HOME=str(tmp), XDG_RUNTIME_DIR=str(tmp))
    return env


def _tiled_sample(path: Path, times: int = 3) -> Path:
    """The sample repeated ``times`` × ``times`` (same grid origin and pixel size): a run long
    enough to be cancelled or killed mid-way on any machine. Written with QGIS's GDAL bindings."""
    import numpy as np
    from osgeo import gdal

    src = gdal.Open(str(SAMPLE))
    data = src.ReadAsArray()
    tiled = np.tile(data, (1, times, times))
    options = ["TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256"]
    dst = gdal.GetDriverByName("GTiff").Create(
        str(path), tiled.shape[2], tiled.shape[1], tiled.shape[0], src.GetRasterBand(1).DataType, options=options
    )
    dst.SetProjection(src.GetProjection())
    dst.SetGeoTransform(src.GetGeoTransform())
    for band in range(tiled.shape[0]):
        dst.GetRasterBand(band + 1).WriteArray(tiled[band])
    dst.FlushCache()
    dst = src = None  # closes both files
    return path


def _cut_short(whole: Path, path: Path, keep: float = 0.6) -> Path:
    """``whole`` cut after ``keep`` of its bytes: a header QGIS opens, blocks GDAL cannot read."""
    raw = whole.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])
    return path


@pytest.fixture(scope="module")
def desktop_report(plugin_zip, tmp_path_factory) -> dict:
    """One desktop session (run, cancel, kill the worker, run again); what its script saw."""
    xvfb_run = _binary("xvfb-run")
    qgis = _binary("qgis.bin")
    root = tmp_path_factory.mktemp("desktop")
    profiles, tmp, out = root / "profiles", root / "tmp", root / "out"
    for folder in (tmp, out):
        folder.mkdir()
    installed = _install(plugin_zip, profiles / "profiles" / "default")
    config = {
        "scene": str(SAMPLE), "big_scene": str(_tiled_sample(root / "big.tif")), "expression": "vegetation",
        "cut_scene": str(_cut_short(_tiled_sample(root / "whole.tif", times=1), root / "cut.tif")),
        "report": str(root / "report.json"),
        "screenshot": str(root / "dock.png"), "cancel_output": str(out / "cancelled.gpkg"), "timeout_s": 420,
        "vehicle_scene": str(shutil.copy(VEHICLE_SAMPLE, root / VEHICLE_SAMPLE.name)), "vehicle_expression": "cars",
        "vehicles_screenshot": str(root / "vehicles.png"), "xyz_root": str(root / "tiles"),
    }
    (root / "config.json").write_text(json.dumps(config))
    env = dict(_env(tmp), RRSIS_DESKTOP_TEST=str(root / "config.json"))
    argv = [
        xvfb_run, "-a", "-s", "-screen 0 1600x1050x24", qgis, "--nologo", "--noversioncheck",
        "--profiles-path", str(profiles), "--code", str(SESSION_SCRIPT),
    ]
    process = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=480, cwd=root)
    report_file = Path(config["report"])
    assert report_file.is_file(), f"QGIS ended ({process.returncode}) without a report:\n{process.stderr[-3000:]}"
    report = json.loads(report_file.read_text())
    report.update(returncode=process.returncode, installed=str(installed), stderr=process.stderr[-3000:])
    for made, kept in ((config["screenshot"], SCREENSHOT), (config["vehicles_screenshot"], VEHICLES_SCREENSHOT)):
        if Path(made).is_file():
            kept.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(made, kept)
    assert report["error"] is None, report["error"]
    return report


def test_dock_run_gives_styled_polygons_and_qgis_lives_on(desktop_report):
    assert desktop_report["returncode"] == 0  # QGIS exited by itself, not on a signal
    run = desktop_report["steps"]["run"]
    assert run["status"] == "ok", run["message"]
    (layer,) = run["layers"]
    assert layer["name"] == "vegetation" and layer["features"] > 0 and layer["provider"] == "memory"
    assert layer["fill_alpha"] < 255  # the plugin's semi-transparent style
    assert layer["crs"] == "EPSG:32640"
    assert run["workdirs"] == []
    assert desktop_report["screenshot"]["saved"]
    # the panel names the worker this test chose and the library bundled in the installed zip
    assert sys.executable in desktop_report["panel"]
    assert desktop_report["installed"] in desktop_report["panel"]


def test_typing_shows_the_understood_as_hint_in_the_desktop(desktop_report):
    hint = desktop_report["hint"]
    assert desktop_report["hint_before"] == ""  # nothing until the typing pauses
    assert hint["visible"] and hint["workers"] == 1
    assert hint["text"].startswith("'houses' understood as building (nearest: 'buildings' 0.67")
    assert hint["text"].endswith("runs at 1.5 m/px")
    assert "unpaved land" in hint["completer"]


def test_qgis_process_never_loads_the_library_or_its_gis_wheels(desktop_report):
    assert desktop_report["forbidden_modules"] == []


def test_cancel_in_the_desktop_leaves_nothing(desktop_report):
    cancel = desktop_report["steps"]["cancel"]
    assert cancel["status"] == "cancelled", cancel["message"]
    assert cancel["layers"] == [] and cancel["project_layers"] == cancel["layers_before"]
    assert cancel["output_folder"] == []
    assert cancel["workdirs"] == []
    # the run stopped between batches; the warm worker lives on for the next run
    assert cancel["worker_alive"] is True and cancel["exit"] is None


def test_killed_worker_is_a_message_and_the_next_run_works(desktop_report):
    kill = desktop_report["steps"]["kill"]
    assert kill["status"] == "error"
    assert "stopped unexpectedly" in kill["message"] and "SIGKILL" in kill["message"]
    assert any("stopped unexpectedly" in text for text in kill["bar"])
    assert kill["worker_alive"] is False and kill["workdirs"] == []
    assert kill["exit"] == -9
    fault = desktop_report["steps"]["fault"]
    assert fault["status"] == "error" and fault["layers"] == [] and fault["workdirs"] == []
    assert "cannot read" in fault["message"] and "cut.tif" in fault["message"] and "\n" not in fault["message"]
    assert any("cannot read" in text for text in fault["bar"])
    assert fault["exit"] is None  # the worker said why and waits for the next run
    assert fault["worker_pid"] != kill["worker_pid"]  # a fresh worker replaced the killed one
    again = desktop_report["steps"]["again"]
    assert again["status"] == "ok", again["message"]
    assert again["layers"][0]["features"] > 0
    assert again["worker_pid"] == fault["worker_pid"]  # the same warm worker


def test_the_warm_worker_serves_runs_and_hints_in_the_desktop(desktop_report):
    """One worker for the runs and the hints (two processes in all: the second replaces the one
    killed on purpose); timings are printed, not asserted (issue 23's goals: the second Munich
    run <= 2 s from click to styled layer, a hint <= 0.3 s once the worker is warm)."""
    steps = desktop_report["steps"]
    first, again = steps["vehicles"], steps["vehicles_again"]
    assert again["status"] == "ok" and again["layers"][0]["features"] == first["layers"][0]["features"]
    assert again["worker_pid"] == first["worker_pid"] == steps["xyz"]["worker_pid"]
    assert desktop_report["hint"]["started"] == 1  # the hint asked the run's worker
    assert desktop_report["workers"]["started"] == 2
    (alive,) = desktop_report["workers"]["alive"]
    assert alive["pid"] == again["worker_pid"] and alive["state"] == "idle"
    print("\ndesktop timings (s, click to styled layer): " + ", ".join(
        f"{name} {step['seconds']:.2f}" for name, step in steps.items()) +
        f"; hint on the warm worker {desktop_report['hint']['seconds']:.2f}")


def test_a_layer_that_is_no_file_is_exported_and_segmented_in_the_desktop(desktop_report):
    # QGIS's writer exports the XYZ layer on the task's thread (provider and renderer cloned on
    # the main thread, released there after), then the worker segments the GeoTIFF
    xyz = desktop_report["steps"]["xyz"]
    assert xyz["status"] == "ok", xyz["message"]
    (layer,) = xyz["layers"]
    assert layer["crs"] == "EPSG:3857" and layer["features"] > 0
    assert xyz["workdirs"] == desktop_report["xyz_workdirs_before"]  # the export was cleaned up


def test_the_desktop_finds_the_cars_of_the_munich_sample(desktop_report):
    vehicles = desktop_report["steps"]["vehicles"]
    assert vehicles["status"] == "ok", vehicles["message"]
    (layer,) = vehicles["layers"]
    assert layer["name"] == "cars" and layer["crs"] == "EPSG:32632"
    assert layer["features"] >= 10  # 33 labelled cars; tests/geo/test_default_vehicles.py checks where
    assert desktop_report["vehicles_screenshot"]["saved"]
    assert desktop_report["vehicles_hint"].startswith("'cars' understood as car (nearest: 'cars' 1.00")
    assert desktop_report["vehicles_hint"].endswith("runs at 0.172 m/px")


def test_qgis_process_runs_the_algorithm(qgis_app, plugin_zip, tmp_path):
    """``qgis_process.bin run rrsis:segment`` with the plugin in the default profile of a fresh
    $XDG_DATA_HOME (qgis_process 3.22 has no --profiles-path; it loads enabled plugins that
    declare hasProcessingProvider)."""
    qgis_process = _binary("qgis_process.bin")
    data_home, tmp = tmp_path / "data", tmp_path / "tmp"
    tmp.mkdir()
    _install(plugin_zip, data_home / "QGIS" / "QGIS3" / "profiles" / "default")
    output = tmp_path / "out" / "water.gpkg"
    output.parent.mkdir()
    env = dict(_env(tmp), XDG_DATA_HOME=str(data_home), QT_QPA_PLATFORM="offscreen")
    argv = [qgis_process, "run", "rrsis:segment", "--", f"INPUT={SAMPLE}", "EXPRESSIONS=water", f"OUTPUT={output}"]
    process = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert process.returncode == 0, process.stdout[-2000:] + process.stderr[-3000:]
    assert output.is_file()
    from qgis.core import QgsVectorLayer

    layer = QgsVectorLayer(f"{output}|layername=water", "water", "ogr")
    assert layer.isValid() and layer.featureCount() > 0
    assert layer.crs().authid() == "EPSG:32640"
    assert "FEATURE_COUNT:" in process.stdout
    assert "'water' understood as water (nearest: 'water' 1.00" in process.stdout  # the plan line, before the tiles
    assert sorted(p.name for p in output.parent.iterdir()) == ["water.gpkg"]
    assert not list(tmp.glob("rrsis-processing-*"))
