"""Test data and configs for tests/training.

:func:`write_shapes_dataset` writes a real RefSegRS-format directory: GeoTIFF images holding a
red square and a blue disk at random places, 0/255 GeoTIFF masks, ``output_phrase_*.txt``. Each
image has two expressions, "red building" (the square) and "blue vehicle" (the disk), so the
target can only be found by reading the expression.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.transform import Affine

EXPRESSIONS = ("red building", "blue vehicle")
RED, BLUE = (200, 30, 30), (30, 40, 210)


def write_geotiff(path: Path, bands: np.ndarray, *, origin=(500000.0, 2780000.0), pixel: float = 0.5) -> None:
    """Write ``bands`` ``[C, H, W]`` uint8 as a georeferenced GeoTIFF (UTM 40N)."""
    count, height, width = bands.shape
    profile = dict(driver="GTiff", width=width, height=height, count=count, dtype="uint8",
                   crs=CRS.from_epsg(32640), transform=Affine(pixel, 0.0, origin[0], 0.0, -pixel, origin[1]))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(bands)


def make_scene(rng: np.random.Generator, size: int, large: bool = False) -> tuple:
    """An image with a red square and a blue disk that do not overlap, and their masks.

    ``large`` shapes (a third to a half of the image across) are easier to segment exactly at a
    coarse feature resolution.
    """
    image = rng.integers(90, 140, size=(size, size, 3)).astype(np.uint8)
    yy, xx = np.mgrid[:size, :size]
    sides = (size // 3, size // 2) if large else (size // 4, size // 3)
    radii = (size // 6, size // 4) if large else (size // 9, size // 6)
    while True:
        side = int(rng.integers(*sides))
        radius = int(rng.integers(*radii))
        sy, sx = rng.integers(0, size - side, size=2)
        cy, cx = rng.integers(radius, size - radius, size=2)
        square = (yy >= sy) & (yy < sy + side) & (xx >= sx) & (xx < sx + side)
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2
        if not (square & disk).any():
            break
    image[square] = RED
    image[disk] = BLUE
    return image, square, disk


def write_shapes_dataset(root: Path, splits: Mapping[str, int], size: int = 64, seed: int = 0, large: bool = False) -> Path:
    """A RefSegRS-format dataset with ``splits[name]`` images per split, two expressions each."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    counter = 0
    for split, n_images in splits.items():
        lines = []
        for _ in range(n_images):
            image, square, disk = make_scene(rng, size, large)
            for expression, mask in zip(EXPRESSIONS, (square, disk)):
                key = str(counter)
                counter += 1
                write_geotiff(root / "images" / f"{key}.tif", image.transpose(2, 0, 1))
                write_geotiff(root / "masks" / f"{key}.tif", (mask.astype(np.uint8) * 255)[None])
                lines.append(f"{key} {expression}")
        (root / f"output_phrase_{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def write_config(path: Path, settings: Mapping[str, Any]) -> Path:
    """Write a training config YAML."""
    import yaml

    path.write_text(yaml.safe_dump(dict(settings), sort_keys=False), encoding="utf-8")
    return path


def tiny_lgce(input_size: int = 32) -> Dict[str, Any]:
    """``model:`` section of tiny LGCE with GroupNorm in the decoder (no batch statistics)."""
    return {"preset": "tiny-lgce", "overrides": {"input_size": input_size, "decoder_norm": "group"}, "load_pretrained": False}


def tiny_training_config(root: Path, model: Mapping[str, Any], **sections: Any) -> Dict[str, Any]:
    """A training config dict for tests: fp32, no workers, no TensorBoard."""
    cfg: Dict[str, Any] = {
        "name": "test",
        "seed": 0,
        "model": dict(model),
        "data": {"format": "refsegrs", "root": str(root), "train_split": "train", "val_split": "val", "num_workers": 0},
        "optim": {"lr": 3e-3, "encoder_lr": 3e-3, "weight_decay": 0.0, "grad_clip": 1.0},
        "train": {"epochs": 2, "batch_size": 4, "precision": "fp32", "log_every": 1, "device": "cpu"},
        "log": {"tensorboard": False},
    }
    for name, values in sections.items():
        cfg.setdefault(name, {}).update(values)
    return cfg


