#!/usr/bin/env python3
"""Turn the Dubai aerial tiles into a RefSegRS-style referring dataset with ``training.builder``.

1. Wrap every ``tile_N/images/image_part_K.jpg`` and ``tile_N/masks/image_part_K.png`` into a
   GeoTIFF image and a GeoTIFF colour label raster with a stated georeference:
   CRS EPSG:32640 (WGS 84 / UTM 40N, the zone of Dubai), 1.0 m pixels (an estimate: the GSD is
   not documented; villas and lanes suggest about 1 m), north-up, and a distinct nominal origin
   per image — easting 300 000 m + 30 000 m × (N − 1) + 2 500 m × (K − 1), northing 2 790 000 m —
   so that no two images overlap. The true positions of the images are unknown; the origins only
   make every crop's georeference unique and consistent.
2. Build with ``training/builder/configs/dubai.yaml`` in multi-scene mode, every image wholly in
   the split of its tile: tiles 1–6 train, tile 7 validation (change with --val-tiles /
   --test-tiles; split by tile, never by crop).

    .venv/bin/python scripts/prepare_dubai.py [--data ../shared/data/dubai_aerial] [--out data/dubai_refseg] [--overwrite]

Prints the counts per split/template/category and the time taken; the full figures are in
``OUT/stats.json``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import rasterio
import yaml
from PIL import Image
from rasterio.crs import CRS
from rasterio.transform import from_origin

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rrsis_geo.errors import OutputError, RRSISError  # noqa: E402
from training.builder import build_dataset, load_config, load_scenes  # noqa: E402

# the data sits beside the checkout (../shared/data) on the project machines
DATA = ROOT.parent / "shared" / "data" / "dubai_aerial"
CRS_EPSG = 32640  # WGS 84 / UTM zone 40N
GSD_M = 1.0  # estimated from villa and lane widths; not documented by the data set
ORIGIN_EASTING, ORIGIN_NORTHING = 300_000.0, 2_790_000.0
TILE_SPACING_M, PART_SPACING_M = 30_000.0, 2_500.0  # wider than any image (<= 2 061 px)
_PART_RE = re.compile(r"image_part_(\d+)\.jpg$")


def image_origin(tile: int, part: int) -> tuple[float, float]:
    """Nominal upper-left corner (easting, northing) of image ``part`` of ``tile``."""
    return (ORIGIN_EASTING + TILE_SPACING_M * (tile - 1) + PART_SPACING_M * (part - 1),
            ORIGIN_NORTHING)


def find_pairs(data: Path) -> list[tuple[int, int, Path, Path]]:
    """``(tile, part, image.jpg, mask.png)`` for every image that has a mask."""
    pairs = []
    for tile_dir in sorted(data.glob("tile_*"), key=lambda p: int(p.name.split("_")[1])):
        tile = int(tile_dir.name.split("_")[1])
        for jpg in sorted((tile_dir / "images").glob("image_part_*.jpg")):
            match = _PART_RE.search(jpg.name)
            mask = tile_dir / "masks" / jpg.name.replace(".jpg", ".png")
            if match and mask.is_file():
                pairs.append((tile, int(match.group(1)), jpg, mask))
    return pairs


def _write_geotiff(path: Path, bands: np.ndarray, transform, crs: CRS) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    profile = {"driver": "GTiff", "dtype": "uint8", "count": bands.shape[0],
               "height": bands.shape[1], "width": bands.shape[2], "crs": crs,
               "transform": transform, "compress": "deflate", "predictor": 2,
               "interleave": "pixel", "photometric": "RGB", "tiled": True}
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(bands)
    os.replace(tmp, path)


def wrap_pair(tile: int, part: int, jpg: Path, png: Path, scenes_dir: Path) -> tuple[Path, Path]:
    """Write ``t{tile}_p{part}.tif`` (RGB) and ``t{tile}_p{part}_labels.tif`` (colour labels,
    palette masks expanded to RGB) with the nominal georeference."""
    image = np.asarray(Image.open(jpg).convert("RGB"))
    labels = np.asarray(Image.open(png).convert("RGB"))
    if image.shape != labels.shape:
        raise RRSISError(f"{jpg} is {image.shape[1]}×{image.shape[0]} but {png} is "
                         f"{labels.shape[1]}×{labels.shape[0]}")
    transform = from_origin(*image_origin(tile, part), GSD_M, GSD_M)
    crs = CRS.from_epsg(CRS_EPSG)
    stem = f"t{tile}_p{part:03d}"
    image_path, label_path = scenes_dir / f"{stem}.tif", scenes_dir / f"{stem}_labels.tif"
    _write_geotiff(image_path, np.moveaxis(image, -1, 0), transform, crs)
    _write_geotiff(label_path, np.moveaxis(labels, -1, 0), transform, crs)
    return image_path, label_path


def split_of(tile: int, val_tiles: set[int], test_tiles: set[int]) -> str:
    return "val" if tile in val_tiles else "test" if tile in test_tiles else "train"


def prepare_scenes(data: Path, scenes_dir: Path, val_tiles: set[int], test_tiles: set[int],
                   overwrite: bool) -> Path:
    """Write the GeoTIFF scenes and ``scenes.yaml``; returns the scenes file."""
    if scenes_dir.exists():
        if not overwrite:
            raise OutputError(f"{scenes_dir} already exists; pass --overwrite to rewrite it")
        shutil.rmtree(scenes_dir)
    scenes_dir.mkdir(parents=True)
    pairs = find_pairs(data)
    if not pairs:
        raise RRSISError(f"no tile_N/images/*.jpg with masks under {data}")
    entries = []
    for tile, part, jpg, png in pairs:
        image_path, label_path = wrap_pair(tile, part, jpg, png, scenes_dir)
        entries.append({"name": image_path.stem, "image": image_path.name,
                        "labels": label_path.name, "split": split_of(tile, val_tiles, test_tiles)})
    scenes_file = scenes_dir / "scenes.yaml"
    scenes_file.write_text(yaml.safe_dump({"scenes": entries}, sort_keys=False), encoding="utf-8")
    return scenes_file


def _tiles(text: str) -> set[int]:
    return {int(t) for t in text.split(",") if t.strip()}


def report(stats: dict, seconds: float, out: Path) -> str:
    """The highlights of ``stats.json``."""
    lines = [f"dataset: {out}  ({seconds:.1f} s)"]
    for split, row in stats["splits"].items():
        lines.append(f"  {split:5s}: {row['triplets']:5d} triplets, {row['crops']:4d} crops, "
                     f"{row['scenes']:2d} images, {row['expressions']:2d} distinct expressions")
    for title, key in (("template", "per_template"), ("category", "per_category"),
                       ("relation", "per_relation"), ("attribute", "per_attribute")):
        lines.append(f"  per {title}:")
        for name, counts in stats[key].items():
            lines.append(f"    {name:28s} " + "  ".join(f"{s} {n:5d}" for s, n in counts.items()))
    fg = stats["foreground_share"]
    lines.append("  foreground share: mean " + ", ".join(f"{k} {v:.3f}" for k, v in fg["mean"].items())
                 + "; below 5 %: " + ", ".join(f"{k} {v:.1%}" for k, v in
                                              fg["share_below_5_percent"].items()))
    lines.append("  dropped: " + ", ".join(f"{k} {v}" for k, v in stats["dropped"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="folder with tile_N/ (default %(default)s)")
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "dubai_refseg",
                        help="dataset folder (default %(default)s)")
    parser.add_argument("--scenes-dir", type=Path,
                        help="where the GeoTIFF scenes go (default: OUT_scenes beside --out)")
    parser.add_argument("--classes", type=Path, default=ROOT / "training/builder/configs/dubai.yaml")
    parser.add_argument("--val-tiles", type=_tiles, default={7}, help="comma list (default 7)")
    parser.add_argument("--test-tiles", type=_tiles, default=set(), help="comma list (default none)")
    parser.add_argument("--window", type=int)
    parser.add_argument("--stride", type=int)
    parser.add_argument("--output-size", type=int)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    out = args.out.absolute()
    scenes_dir = (args.scenes_dir or out.with_name(out.name + "_scenes")).absolute()
    try:
        if args.val_tiles & args.test_tiles:
            raise RRSISError("a tile cannot be in both --val-tiles and --test-tiles")
        config = load_config(args.classes).with_tiling(args.window, args.stride, args.output_size)
        if out.exists() and not args.overwrite:
            raise OutputError(f"{out} already exists; pass --overwrite to replace it")
        out.parent.mkdir(parents=True, exist_ok=True)
        scenes_file = prepare_scenes(args.data, scenes_dir, args.val_tiles, args.test_tiles,
                                     args.overwrite)
        wrapped = time.perf_counter() - started
        stats = build_dataset(load_scenes(scenes_file), config, out, overwrite=args.overwrite)
    except RRSISError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    seconds = time.perf_counter() - started
    print(f"GeoTIFF scenes: {scenes_dir} ({wrapped:.1f} s)")
    print(report(stats, seconds, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
