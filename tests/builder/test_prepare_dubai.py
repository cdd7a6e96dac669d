"""scripts/prepare_dubai.py on a miniature copy of the Dubai layout (JPEG images, palette masks)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import rasterio
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
COLOURS = {"building": (0x3C, 0x10, 0x98), "land": (0x84, 0x29, 0xF6), "road": (0x6E, 0xC1, 0xE4),
           "vegetation": (0xFE, 0xDD, 0x3A), "water": (0xE2, 0xA9, 0x29), "unlabeled": (0x9B, 0x9B, 0x9B)}


def load_script():
    spec = importlib.util.spec_from_file_location("prepare_dubai", REPO / "scripts" / "prepare_dubai.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_tile(root: Path, tile: int, part: int, size: tuple[int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h, w = size
    rgb = np.zeros((h, w, 3), dtype=np.uint8)
    rgb[:] = COLOURS["land"]
    rgb[h // 2 - 6:h // 2 + 6, :] = COLOURS["road"]
    rgb[h // 2 - 40:h // 2 - 8, 10:w // 2] = COLOURS["building"]
    rgb[h // 2 - 32:h // 2 - 16, 20:40] = COLOURS["vegetation"]
    rgb[h - 30:, :] = COLOURS["water"]
    rgb[:4, :4] = COLOURS["unlabeled"]
    (root / f"tile_{tile}" / "images").mkdir(parents=True, exist_ok=True)
    (root / f"tile_{tile}" / "masks").mkdir(parents=True, exist_ok=True)
    photo = np.clip(rgb.astype(int) // 2 + rng.integers(0, 60, size=rgb.shape), 0, 255)
    Image.fromarray(photo.astype(np.uint8)).save(root / f"tile_{tile}/images/image_part_{part:03d}.jpg")
    colours, index = np.unique(rgb.reshape(-1, 3), axis=0, return_inverse=True)
    mask = Image.fromarray(index.reshape(h, w).astype(np.uint8), mode="P")
    mask.putpalette(colours.ravel().tolist())
    mask.save(root / f"tile_{tile}/masks/image_part_{part:03d}.png")
    return rgb


def test_origins_never_overlap():
    script = load_script()
    boxes = [(*script.image_origin(t, p), 2061.0) for t in range(1, 8) for p in range(1, 10)]
    for i, (x0, y0, size) in enumerate(boxes):
        for x1, y1, _ in boxes[i + 1:]:
            assert abs(x0 - x1) >= size or abs(y0 - y1) >= size


def test_prepare_dubai_wraps_and_builds_by_tile(tmp_path, capsys):
    script = load_script()
    data = tmp_path / "dubai"
    labels = {(1, 1): write_tile(data, 1, 1, (200, 230), 0),
              (1, 2): write_tile(data, 1, 2, (210, 200), 1),
              (2, 1): write_tile(data, 2, 1, (200, 200), 2)}
    out = tmp_path / "refseg"
    rc = script.main(["--data", str(data), "--out", str(out), "--val-tiles", "2",
                      "--window", "96", "--stride", "48", "--output-size", "64"])
    assert rc == 0, capsys.readouterr().err
    scenes_dir = tmp_path / "refseg_scenes"
    entries = yaml.safe_load((scenes_dir / "scenes.yaml").read_text())["scenes"]
    assert [(e["name"], e["split"]) for e in entries] == [
        ("t1_p001", "train"), ("t1_p002", "train"), ("t2_p001", "val")]
    for (tile, part), rgb in labels.items():
        with rasterio.open(scenes_dir / f"t{tile}_p{part:03d}_labels.tif") as src:
            assert src.crs.to_epsg() == 32640
            assert (src.transform.a, src.transform.e) == (1.0, -1.0)
            assert (src.transform.c, src.transform.f) == script.image_origin(tile, part)
            assert np.array_equal(src.read().transpose(1, 2, 0), rgb)  # palette expanded, lossless
        with rasterio.open(scenes_dir / f"t{tile}_p{part:03d}.tif") as src:
            assert src.count == 3 and src.transform == rasterio.open(
                scenes_dir / f"t{tile}_p{part:03d}_labels.tif").transform
    stats = json.loads((out / "stats.json").read_text())
    assert set(stats["splits"]) == {"train", "val"} and stats["splits"]["val"]["scenes"] == 1
    assert stats["scenes"][0]["gsd_m"] == 1.0 and stats["scenes"][0]["crs"] == "EPSG:32640"
    printed = capsys.readouterr().out
    assert "per template:" in printed and "train" in printed and "val" in printed
    # a second run refuses to replace the dataset unless told to
    assert script.main(["--data", str(data), "--out", str(out)]) == 2
