"""Write the shipped sample scene ``resources/sample/dubai_sample.tif``.

A 896 × 896 px crop of ``tile_7/images/image_part_004.jpg`` of the Dubai aerial data (tile 7 is the
default model's *validation* tile: the model never trained on it), wrapped in a GeoTIFF with the same
nominal georeference that ``scripts/prepare_dubai.py`` gives the whole image: EPSG:32640 (UTM 40N),
1.0 m pixels, upper-left corner of the image at the nominal origin of tile 7, part 4. The position is
nominal (the data set has no georeference); the pixel size is an estimate from villa and lane widths.

    .venv/bin/python scripts/make_sample_scene.py [--data ../shared/data/dubai_aerial] [--overwrite]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rasterio.crs import CRS
from rasterio.transform import from_origin

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from prepare_dubai import CRS_EPSG, DATA, GSD_M, image_origin  # noqa: E402

TILE, PART = 7, 4
COL, ROW, SIZE = 640, 700, 896  # buildings, roads, a golf course and ponds
OUT = ROOT / "resources" / "sample" / "dubai_sample.tif"


def write_rgb_geotiff(path: Path, image: np.ndarray, epsg: int, transform, tags: dict) -> None:
    """``image`` (H, W, 3 uint8) as a tiled JPEG GeoTIFF, written beside ``path`` and renamed into place."""
    height, width = image.shape[:2]
    profile = {"driver": "GTiff", "dtype": "uint8", "count": 3, "height": height, "width": width,
               "crs": CRS.from_epsg(epsg), "transform": transform, "tiled": True,
               "blockxsize": 256, "blockysize": 256, "compress": "jpeg", "jpeg_quality": 90,
               "photometric": "YCbCr", "interleave": "pixel"}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(np.moveaxis(image, -1, 0))
        dst.update_tags(**tags)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    if args.out.exists() and not args.overwrite:
        print(f"{args.out} exists; pass --overwrite to replace it", file=sys.stderr)
        return 2
    jpg = args.data / f"tile_{TILE}" / "images" / f"image_part_{PART:03d}.jpg"
    image = np.asarray(Image.open(jpg).convert("RGB"))[ROW:ROW + SIZE, COL:COL + SIZE]
    east, north = image_origin(TILE, PART)
    transform = from_origin(east + COL * GSD_M, north - ROW * GSD_M, GSD_M, GSD_M)
    write_rgb_geotiff(args.out, image, CRS_EPSG, transform, {
        "source": f"{jpg.relative_to(args.data.parent)} window col {COL} row {ROW} size {SIZE}",
        "georeference": "nominal (EPSG:32640, 1.0 m pixels estimated)",
    })
    print(f"{args.out}: {SIZE}×{SIZE} px, {args.out.stat().st_size / 1024:.0f} KiB, origin {transform.c:.0f} E {transform.f:.0f} N")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
