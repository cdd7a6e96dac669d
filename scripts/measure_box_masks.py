#!/usr/bin/env python3
"""IoU of each box-to-mask method (training/builder/boxmask.py) against the hand outlines in
training/builder/data/hand_outlines.json; prints a Markdown table (a benchmark: figures only).

    .venv/bin/python scripts/measure_box_masks.py [--data ../shared/data/aerial_vehicles]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from rasterio.features import rasterize
from shapely.geometry import Polygon

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from training.builder.boxes import YoloReader  # noqa: E402
from training.builder.boxmask import METHODS, instance_masks  # noqa: E402

OUTLINES = ROOT / "training/builder/data/hand_outlines.json"
NAMES = ["car", "truck", "bus", "minibus", "cyclist"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/aerial_vehicles")
    args = parser.parse_args(argv)
    outlines = json.loads(OUTLINES.read_text(encoding="utf-8"))["outlines"]
    rows, scores = [], {m: [] for m in METHODS}
    for entry in outlines:
        image = np.asarray(Image.open(args.data / "images" / entry["image"]).convert("RGB"))
        h, w = image.shape[:2]
        stem = Path(entry["image"]).stem
        boxes = YoloReader(NAMES)(args.data / "labels" / f"{stem}.txt", w, h)
        truth = rasterize([Polygon(entry["polygon"])], out_shape=(h, w)).astype(bool)
        row = [f"{entry['image']} #{entry['box']} ({entry['note']})"]
        for method in METHODS:
            labels = instance_masks(boxes, image, method)
            pred = labels == entry["box"] + 1
            iou = (pred & truth).sum() / max(1, (pred | truth).sum())
            scores[method].append(iou)
            row.append(f"{iou:.2f}")
        rows.append(row)
    print("| vehicle | " + " | ".join(METHODS) + " |")
    print("|---|" + "---:|" * len(METHODS))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print("| **mean** | " + " | ".join(f"**{np.mean(scores[m]):.2f}**" for m in METHODS) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
