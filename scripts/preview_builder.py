#!/usr/bin/env python3
"""Draw crops of a built data set with their expressions and masks over the image, for a look.

    .venv/bin/python scripts/preview_builder.py data/combined_refseg [--n 5] [--out build/builder_preview]

Each PNG shows one crop twice the stored size: the image on the left, then up to four of its
triplets, each mask tinted over the image with its expression (and seen/held-out, source, GSD)
written under it.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import textwrap
from pathlib import Path

import warnings

import numpy as np
import rasterio
import rasterio.errors
from PIL import Image, ImageDraw

TINT = (255, 40, 40)


def _read(path: Path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path) as src:
            data = src.read()
    return np.moveaxis(data, 0, -1) if data.shape[0] > 1 else data[0]


def render(root: Path, crop: dict, scale: int = 2, per_crop: int = 4) -> Image.Image:
    """One panel row: the crop, then up to ``per_crop`` masks tinted over it with captions."""
    # the richest meanings first (attributes, relations), one phrasing each, then the plain ones
    order = sorted(crop["samples"], key=lambda s: -len(s.get("template", "").split("_")))
    samples, meanings = [], set()
    for sample in order:
        if sample.get("canonical", sample["id"]) not in meanings and len(samples) < per_crop:
            meanings.add(sample.get("canonical", sample["id"]))
            samples.append(sample)
    image = _read(root / "images" / f"{samples[0]['id']}.tif")
    h, w = image.shape[:2]
    H, W = h * scale, w * scale
    caption = 64
    sheet = Image.new("RGB", ((len(samples) + 1) * (W + 6), H + caption), "white")
    base = Image.fromarray(image).resize((W, H), Image.NEAREST)
    sheet.paste(base, (0, 0))
    draw = ImageDraw.Draw(sheet)
    draw.text((4, H + 4), f"{crop['crop_id']}\n{crop['source']}, {crop['gsd_m']:.3f} m/px, {crop['split']}",
              fill="black")
    for k, sample in enumerate(samples, start=1):
        mask = _read(root / "masks" / f"{sample['id']}.tif") > 127
        tinted = image.astype(np.float32).copy()
        tinted[mask] = 0.45 * tinted[mask] + 0.55 * np.array(TINT)
        edge = mask & ~np.pad(mask, 1)[2:, 1:-1] | mask & ~np.pad(mask, 1)[:-2, 1:-1] \
            | mask & ~np.pad(mask, 1)[1:-1, 2:] | mask & ~np.pad(mask, 1)[1:-1, :-2]
        tinted[edge] = (255, 255, 0)
        panel = Image.fromarray(tinted.astype(np.uint8)).resize((W, H), Image.NEAREST)
        x = k * (W + 6)
        sheet.paste(panel, (x, 0))
        text = f"\"{sample['expression']}\" [{sample['phrasing']}; {sample['template']}]"
        draw.text((x + 4, H + 4), "\n".join(textwrap.wrap(text, 60)), fill="black")
    return sheet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("build/builder_preview"))
    args = parser.parse_args(argv)
    crops = json.loads((args.dataset / "crops.json").read_text(encoding="utf-8"))["crops"]
    rng = random.Random(args.seed)
    by_source: dict[str, list[dict]] = {}
    for crop in crops:
        by_source.setdefault(crop.get("source", "data"), []).append(crop)
    picks = []
    while len(picks) < min(args.n, len(crops)):  # round robin over the sources
        for source in sorted(by_source):
            if len(picks) < args.n and by_source[source]:
                picks.append(by_source[source].pop(rng.randrange(len(by_source[source]))))
    args.out.mkdir(parents=True, exist_ok=True)
    for k, crop in enumerate(picks):
        path = args.out / f"{k:02d}_{crop['crop_id']}.png"
        render(args.dataset, crop).save(path)
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
