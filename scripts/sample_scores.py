#!/usr/bin/env python3
"""Score checkpoints on the three shipped samples (the figures the model card quotes and the
accuracy tests sit between): per expression IoU, precision and recall on the Dubai sample against
its labels; on the Munich and Minsk strips, the share of labelled vehicles of each class at least
half covered and the IoU with the boxes.

    PYTHONPATH=. .venv/bin/python scripts/sample_scores.py --checkpoint new=runs/x/best --checkpoint previous=runs/y

Prints one markdown table per sample, one column group per checkpoint.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import geopandas as gpd  # noqa: E402
import rasterio  # noqa: E402
from shapely.ops import unary_union  # noqa: E402

import rrsis_geo  # noqa: E402
from rrsis_geo.vectorize import layer_names  # noqa: E402

SAMPLES = REPO / "resources" / "sample"
DUBAI_CODES = {"building": 1, "road": 3, "vegetation": 4, "water": 5}
DUBAI = {"building": "building", "houses": "building", "structures": "building", "road": "road",
         "streets": "road", "vegetation": "vegetation", "greenery": "vegetation", "water": "water",
         "the pond": "water"}
VEHICLES = {"munich_street_sample": ["car", "automobiles", "vehicles", "light-duty vehicle"],
            "minsk_street_sample": ["car", "bus", "vehicle", "light-duty vehicle"]}


def dubai_scores(checkpoint: str, folder: Path) -> Dict[str, Tuple[float, float, float]]:
    """expression -> (IoU, precision, recall) on the Dubai sample's labelled pixels."""
    texts = list(DUBAI)
    mask = folder / "dubai.tif"
    rrsis_geo.predict(SAMPLES / "dubai_sample.tif", texts, checkpoint=checkpoint, mask_out=mask, device="cpu")
    with rasterio.open(mask) as masks, rasterio.open(SAMPLES / "dubai_sample.labels.tif") as labels:
        truth = labels.read(1)
        valid = truth > 0
        out = {}
        for i, text in enumerate(texts):
            pred, target = (masks.read(i + 1) == 1) & valid, (truth == DUBAI_CODES[DUBAI[text]]) & valid
            inter = np.count_nonzero(pred & target)
            union, marked, labelled = np.count_nonzero(pred | target), np.count_nonzero(pred), np.count_nonzero(target)
            out[text] = (inter / union if union else 0.0, inter / marked if marked else 0.0,
                         inter / labelled if labelled else 0.0)
    return out


def vehicle_scores(checkpoint: str, sample: str, folder: Path) -> Dict[str, Dict[str, float]]:
    """expression -> {'IoU': with all boxes of the asked kind, class: share of boxes half covered}."""
    texts = VEHICLES[sample]
    out_path = folder / f"{sample}.gpkg"
    rrsis_geo.predict(SAMPLES / f"{sample}.tif", texts, checkpoint=checkpoint, output=out_path, device="cpu")
    boxes = gpd.read_file(SAMPLES / f"{sample}.vehicles.geojson")
    scores = {}
    for text, layer in zip(texts, layer_names(texts)):
        polygons = gpd.read_file(out_path, layer=layer)
        found = unary_union(list(polygons.geometry)) if len(polygons) else None
        row = {}
        for kind in sorted(boxes["class"].unique()):
            kind_boxes = boxes[boxes["class"] == kind]
            cover = (kind_boxes.geometry.intersection(found).area / kind_boxes.geometry.area).to_numpy() \
                if found is not None else np.zeros(len(kind_boxes))
            row[f"{kind} ({len(kind_boxes)})"] = float((cover >= 0.5).mean())
        wanted = boxes[boxes["class"] == "bus"] if text == "bus" else (
            boxes[boxes["class"] == "car"] if text in ("car", "automobiles") else boxes)
        truth = unary_union(list(wanted.geometry))
        union = truth.union(found).area if found is not None else truth.area
        row["IoU"] = truth.intersection(found).area / union if found is not None and union else 0.0
        scores[text] = row
    return scores


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", action="append", required=True, metavar="NAME=DIR")
    args = parser.parse_args(argv)
    named = dict(item.partition("=")[::2] for item in args.checkpoint)
    with tempfile.TemporaryDirectory() as tmp:
        dubai, vehicles = {}, {}
        for index, (name, path) in enumerate(named.items()):
            folder = Path(tmp) / str(index)  # one folder per checkpoint: outputs are never overwritten
            folder.mkdir()
            dubai[name] = dubai_scores(path, folder)
            vehicles[name] = {sample: vehicle_scores(path, sample, folder) for sample in VEHICLES}
    print("Dubai sample (labelled pixels): IoU (precision / recall)\n")
    print("| expression | " + " | ".join(named) + " |")
    print("|---|" + "---:|" * len(named))
    for text in DUBAI:
        cells = [f"{d[text][0]:.2f} ({d[text][1]:.2f} / {d[text][2]:.2f})" for d in dubai.values()]
        print(f"| {text} | " + " | ".join(cells) + " |")
    for sample, texts in VEHICLES.items():
        print(f"\n{sample}: IoU with the asked kind's boxes; share of each class's boxes at least half covered\n")
        print("| expression | " + " | ".join(named) + " |")
        print("|---|" + "---|" * len(named))
        for text in texts:
            cells = [", ".join(f"{k} {v:.2f}" for k, v in vehicles[n][sample][text].items()) for n in named]
            print(f"| {text} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
