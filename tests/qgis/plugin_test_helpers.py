"""Helpers for the QGIS plugin tests (imported by tests/qgis/conftest.py and the test modules)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from qgis.PyQt.QtCore import QCoreApplication, QEventLoop, QTimer

HERE = Path(__file__).resolve().parent
#: native stacks the process hosting QGIS never loads (the plugin runs the library in a worker
#: process). rrsis_geo itself is not listed: scripts/package_plugin.py, which these tests call,
#: imports its light io_utils; the real QGIS session (test_desktop.py) checks rrsis_geo too.
FORBIDDEN = ("torch", "rasterio", "shapely", "pyogrio", "geopandas", "pyproj", "fiona")
#: the library's standard-library-only modules the plugin reads (options schema, errors and their
#: fixes, the typed checkpoint config); the packager's io_utils
LIBRARY_ALLOWED = ("rrsis_geo", "rrsis_geo.errors", "rrsis_geo.options", "rrsis_geo.io_utils",
                   "rrsis_geo.checkpoint_config", "rrsis_geo.calibration", "rrsis_geo.knowledge", "rrsis_geo.models",
                   "rrsis_geo.models.vocabulary")
SCENE_CRS = "EPSG:32640"  # UTM 40N (Dubai)
ORIGIN = (500000.0, 2800000.0)  # top-left corner of the test scenes, metres
SQUARE = (64, 128, 96, 160)  # rows 64..128, columns 96..160 are bright in the test scenes


def wait_for(signal, timeout: float = 180.0):
    """Run the Qt event loop until ``signal`` fires; return its arguments (no sleeping)."""
    loop = QEventLoop()
    received = []

    def on_signal(*args):
        received.append(args)
        loop.quit()

    signal.connect(on_signal)
    timer = QTimer()
    timer.setSingleShot(True)
    timer.timeout.connect(loop.quit)
    timer.start(int(timeout * 1000))
    loop.exec_()
    timer.stop()
    signal.disconnect(on_signal)
    if not received:
        raise TimeoutError(f"no signal within {timeout} s")
    return received[0]


def wait_until(predicate, timeout: float = 30.0, step_ms: int = 20) -> None:
    """Run the Qt event loop until ``predicate()`` holds (for state that a thread changes, whose
    signal may fire before :func:`wait_for` could connect); then deliver what it queued."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not true within {timeout} s")
        loop = QEventLoop()
        QTimer.singleShot(step_ms, loop.quit)
        loop.exec_()
    QCoreApplication.processEvents()


def write_scene(
    path: Path,
    *,
    size: int = 256,
    crs: str = SCENE_CRS,
    origin=ORIGIN,
    pixel: float = 1.0,
    bands: int = 3,
    square=SQUARE,
    tiled: bool = False,
) -> Path:
    """A dark GeoTIFF with one bright square (rows/cols in ``square``), written with QGIS's own
    GDAL bindings (``tiled``: in 64 px blocks, stored one after the other).

    Not rasterio: its wheel carries a second GDAL, and QGIS's process must never hold two (the
    pytest process stands in for QGIS's; :data:`FORBIDDEN` is checked after every test).
    """
    from osgeo import gdal, osr

    data = np.full((bands, size, size), 30, dtype=np.uint8)
    r0, r1, c0, c1 = square
    data[:, r0:r1, c0:c1] = 255
    options = ["TILED=YES", "BLOCKXSIZE=64", "BLOCKYSIZE=64"] if tiled else []
    dataset = gdal.GetDriverByName("GTiff").Create(str(path), size, size, bands, gdal.GDT_Byte, options=options)
    if dataset is None:
        raise OSError(f"GDAL cannot create {path}")
    srs = osr.SpatialReference()
    srs.SetFromUserInput(crs)
    dataset.SetProjection(srs.ExportToWkt())
    dataset.SetGeoTransform((origin[0], pixel, 0.0, origin[1], 0.0, -pixel))
    for band in range(bands):
        dataset.GetRasterBand(band + 1).WriteArray(data[band])
    dataset.FlushCache()
    dataset = None  # closes the file
    return path


def truncated_scene(path: Path, keep: float = 0.6) -> Path:
    """A tiled test scene cut short after ``keep`` of its bytes: the header survives (QGIS
    opens it as a layer), the last blocks are gone (GDAL fails to read them)."""
    whole = write_scene(path.with_name("whole_" + path.name), tiled=True)
    raw = whole.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])
    whole.unlink()
    return path


def square_bounds(origin=ORIGIN, pixel: float = 1.0, square=SQUARE):
    """Map bounds (minx, miny, maxx, maxy) of the bright square of :func:`write_scene`."""
    r0, r1, c0, c1 = square
    return (origin[0] + c0 * pixel, origin[1] - r1 * pixel, origin[0] + c1 * pixel, origin[1] - r0 * pixel)


def brightness_checkpoint(directory: Path, **extra) -> Path:
    """Save a ``test-brightness`` checkpoint (with the MiniLM tokenizer) into ``directory``,
    in a child interpreter (torch never loads in the process that hosts QGIS)."""
    return make_checkpoint("bright", directory, **extra)


def make_checkpoint(kind: str, directory: Path, **extra) -> Path:
    """Run ``make_checkpoints.py KIND DIRECTORY`` on this interpreter; return ``directory``."""
    command = [sys.executable, str(HERE / "make_checkpoints.py"), kind, str(directory)]
    if extra:
        command += ["--extra", json.dumps(extra)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), str(HERE.parents[1]), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return directory


def run_dock(dock, timeout: float = 180.0):
    """Click Run and wait for the task's outcome."""
    assert dock.run_button.isEnabled(), dock.run_button.toolTip()
    task = dock.run()
    assert task is not None, dock.status_label.text()
    (outcome,) = wait_for(dock.run_finished, timeout)
    return outcome
