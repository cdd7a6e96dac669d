"""Write the shipped sample scene ``resources/sample/dubai_sample.tif``.

A 896 × 896 px crop of ``tile_7/images/image_part_004.jpg`` of the Dubai aerial data (tile 7 is the
default model's *validation* tile: the model never trained on it), wrapped in a GeoTIFF with the same
nominal georeference that ``scripts/prepare_dubai.py`` gives the whole image: EPSG:32640 (UTM 40N),
1.0 m pixels, upper-left corner of the image at the nominal origin of tile 7, part 4. The position is
nominal (the data set has no georeference); the pixel size is an estimate from villa and lane widths.

    .venv/bin/python scripts/make_sample_scene.py [--data ../shared/data/dubai_aerial] [--overwrite]

Beside it, ``dubai_sample.labels.tif``: the same window of the image's label mask as class codes
(1 building, 2 land = unpaved land, 3 road, 4 vegetation, 5 water; 0 unlabeled = nodata), for tests
that score the shipped model against real labels.
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
CLASSES = ROOT / "training" / "builder" / "configs" / "dubai.yaml"


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


def class_codes(mask_png: Path, window: tuple[int, int, int], classes: Path = CLASSES) -> tuple[np.ndarray, dict]:
    """The colour mask's ``window`` (col, row, size) as class codes (0 = unlabeled) and their names,
    decoded with the builder's class table (``classes``)."""
    sys.path.insert(0, str(ROOT))
    from training.builder.config import load_config

    config = load_config(classes)
    col, row, size = window
    rgb = np.asarray(Image.open(mask_png).convert("RGB"))[row:row + size, col:col + size].astype(np.uint32)
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    codes, names, known = np.zeros(packed.shape, np.uint8), {0: "unlabeled"}, np.zeros(packed.shape, bool)
    for code, spec in enumerate(config.classes, start=1):
        hit = np.isin(packed, list(spec.colors))
        codes[hit] = 0 if spec.ignore else code
        known |= hit
        if not spec.ignore:
            names[code] = spec.name
    if not known.all():
        raise ValueError(f"{mask_png}: {int((~known).sum())} pixels of colours not in {classes}")
    return codes, names


def write_labels(path: Path, codes: np.ndarray, names: dict, epsg: int, transform) -> None:
    """Class codes as a one-band deflate GeoTIFF (``class_<code>`` tags name them), renamed into place."""
    profile = {"driver": "GTiff", "dtype": "uint8", "count": 1, "height": codes.shape[0], "width": codes.shape[1],
               "crs": CRS.from_epsg(epsg), "transform": transform, "tiled": True, "blockxsize": 256,
               "blockysize": 256, "compress": "deflate", "nodata": 0}
    tmp = path.with_name(f".{path.name}.partial")
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(codes, 1)
        dst.update_tags(**{f"class_{code}": name for code, name in names.items()})
    os.replace(tmp, path)


def sample_parser(doc: str, data: Path, out: Path | None) -> argparse.ArgumentParser:
    """``--data``, ``--out``, ``--overwrite`` of the sample scripts (a script may add more)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=data)
    parser.add_argument("--out", type=Path, default=out)
    parser.add_argument("--overwrite", action="store_true")
    return parser


def sample_arguments(argv: list[str] | None, doc: str, data: Path, out: Path) -> argparse.Namespace:
    """The parsed arguments of :func:`sample_parser`."""
    return sample_parser(doc, data, out).parse_args(argv)


def refuse_existing(paths: list[Path], overwrite: bool) -> bool:
    """True (after saying so) when one of ``paths`` exists and ``overwrite`` is off."""
    existing = [p for p in paths if p.exists()]
    if existing and not overwrite:
        print(f"{existing[0]} exists; pass --overwrite to replace it", file=sys.stderr)
        return True
    return False


def main(argv: list[str] | None = None) -> int:
    args = sample_arguments(argv, __doc__, DATA, OUT)
    labels = args.out.with_name(args.out.name.replace(".tif", ".labels.tif"))
    if refuse_existing([args.out, labels], args.overwrite):
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
    codes, names = class_codes(jpg.parent.parent / "masks" / f"{jpg.stem}.png", (COL, ROW, SIZE))
    write_labels(labels, codes, names, CRS_EPSG, transform)
    print(f"{labels}: classes {names}, {labels.stat().st_size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
