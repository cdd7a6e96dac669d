"""Test data of tests/builder: label rasters drawn class by class, written as real GeoTIFFs."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import from_origin

from training.builder.geometry import CropContext

# Integer labels of the small test vocabulary (value = index + 1; 0 is "unlabeled").
CLASSES = ("land", "road", "lane marking", "parking", "car", "van", "truck", "building",
           "vegetation", "tree", "water")
VALUE = {name: i + 1 for i, name in enumerate(CLASSES)}
UTM40N = CRS.from_epsg(32640)


def base_config(**overrides: Any) -> dict:
    """A classes.yaml (as a dict) over :data:`CLASSES` with the paper's seven relations."""
    config = {
        "name": "test",
        "classes": [{"name": "unlabeled", "value": 0, "ignore": True},
                    *({"name": n, "value": v} for n, v in VALUE.items())],
        "categories": {
            "road": ["road", "lane marking"], "vehicle": ["car", "van", "truck"], "car": "car",
            "building": "building", "vegetation": "vegetation", "tree": "tree",
            "road marking": "lane marking", "water": "water",
        },
        "objects": {"parking area": "parking", "road surface": "road"},
        "attributes": {"light-duty": {"vehicle": ["car", "van"]},
                       "heavy-duty": {"vehicle": "truck"},
                       "large": {"building": {"min_area_m2": 100}},
                       "small": {"building": {"max_area_m2": 40}}},
        "relations": [
            {"phrase": "in the parking area", "object": "parking area", "subjects": ["vehicle", "car"]},
            {"phrase": "with a parking lot", "object": "parking area", "subjects": ["building"]},
            {"phrase": "driving on the road", "object": "road", "subjects": ["vehicle", "car"]},
            {"phrase": "along the road", "object": "road", "subjects": ["building", "tree"]},
            {"phrase": "along with tree", "object": "tree", "subjects": ["road"]},
            {"phrase": "on the road", "object": "road surface", "subjects": ["road marking"]},
            {"phrase": "surrounded by building", "object": "building", "subjects": ["vegetation"]},
        ],
        "tiling": {"window": 64, "stride": 32, "output_size": 64},
        "filters": {"min_area_m2": 0, "min_instance_area_m2": 0, "max_ignored_share": 0.5},
    }
    config.update(overrides)
    return config


def paint(shape: tuple[int, int], fill: str = "land") -> np.ndarray:
    """An integer label array filled with one class (then draw with :func:`box`)."""
    return np.full(shape, VALUE[fill], dtype=np.uint8)


def box(labels: np.ndarray, name: str, rows: tuple[int, int], cols: tuple[int, int]) -> None:
    """Fill rows[0]:rows[1], cols[0]:cols[1] with class ``name``."""
    labels[rows[0]:rows[1], cols[0]:cols[1]] = VALUE[name]


def context(labels: np.ndarray, cfg, gsd_m: float = 1.0) -> CropContext:
    """A CropContext over an integer label array of the test vocabulary."""
    index = cfg.class_index()
    lut = np.zeros(256, dtype=np.uint8)
    for spec in cfg.classes:
        for v in spec.values:
            lut[v] = 0 if spec.ignore else index[spec.name]
    return CropContext(lut[labels], index, gsd_m, cfg.connectivity,
                       cfg.filters.min_instance_area_m2)


def write_raster(path: Path, bands: np.ndarray, *, gsd: float = 1.0, crs: CRS | None = UTM40N,
                 origin: tuple[float, float] = (400_000.0, 2_790_000.0), georef: bool = True,
                 **extra: Any) -> Path:
    """Write ``bands`` (``[H, W]`` or ``[C, H, W]``) as a GeoTIFF (or any driver in ``extra``)."""
    if bands.ndim == 2:
        bands = bands[None]
    profile = {"driver": "GTiff", "count": bands.shape[0], "height": bands.shape[1],
               "width": bands.shape[2], "dtype": str(bands.dtype), **extra}
    if georef:
        profile.update(crs=crs, transform=from_origin(origin[0], origin[1], gsd, gsd))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(bands)
    return path


def town(size: int = 128, seed: int = 0) -> np.ndarray:
    """A small town of the test vocabulary: roads, lots with cars, buildings, courtyards, trees."""
    rng = np.random.default_rng(seed)
    labels = paint((size, size))
    for r in range(0, size, 32):
        box(labels, "road", (r + 12, r + 20), (0, size))
        box(labels, "lane marking", (r + 15, r + 16), (2, size - 2))
    for c in range(0, size, 64):
        box(labels, "road", (0, size), (c + 40, c + 46))
    for r in range(0, size, 32):
        for c in range(0, size, 64):
            box(labels, "building", (r + 21, r + 31), (c + 2, c + 14))
            box(labels, "vegetation", (r + 24, r + 28), (c + 5, c + 10))  # courtyard
            box(labels, "parking", (r + 22, r + 30), (c + 18, c + 36))
            for k in range(int(rng.integers(1, 4))):
                box(labels, "car" if k % 2 == 0 else "van", (r + 23, r + 26),
                    (c + 20 + 5 * k, c + 22 + 5 * k))
            box(labels, "tree", (r + 2, r + 10), (c + 48, c + 56))
            box(labels, "car", (r + 13, r + 15), (c + 24 + int(rng.integers(0, 10)),
                                                  c + 28 + int(rng.integers(0, 10))))
            box(labels, "truck", (r + 17, r + 19), (c + 50, c + 58))
            box(labels, "water", (r + 2, r + 8), (c + 2, c + 30))
    return labels


def rgb_image(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """A ``[3, H, W]`` uint8 image whose colours follow the labels (plus noise)."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, size=(256, 3))
    image = palette[labels] + rng.integers(-10, 10, size=labels.shape + (3,))
    return np.clip(image, 0, 255).astype(np.uint8).transpose(2, 0, 1)
