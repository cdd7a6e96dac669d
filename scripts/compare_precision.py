#!/usr/bin/env python3
"""bf16 against float32 on the shipped samples: do the masks agree, and do their scores move?

    PYTHONPATH=. .venv/bin/python scripts/compare_precision.py [--checkpoint DIR] [--precision bf16] [--compile]

Runs :func:`rrsis_geo.predict` on the Dubai sample (land cover, against its label raster) and the
Munich and Minsk street samples (vehicles, against their boxes) once per precision, and prints per
expression: the share of pixels whose mask is the same in both, the IoU with the labels in each
precision, and the wall time of each run. Figures, never pass/fail.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SAMPLES = ROOT / "resources" / "sample"
#: scene, labels, expression -> label codes (raster) or box classes (GeoJSON)
CASES = [
    ("dubai_sample.tif", "dubai_sample.labels.tif", {"building": [1], "road": [3], "vegetation": [4], "water": [5],
                                                     "houses": [1], "greenery": [4]}),
    ("munich_street_sample.tif", "munich_street_sample.vehicles.geojson", {"car": ["car"], "vehicles": None}),
    ("minsk_street_sample.tif", "minsk_street_sample.vehicles.geojson", {"car": ["car"], "bus": ["bus"],
                                                                         "vehicle": None}),
]


def truth_mask(scene: Path, labels: Path, wanted) -> tuple:
    """(target, valid) on the scene's grid: label codes, or the boxes of some classes (None: all)."""
    import geopandas as gpd
    import rasterio
    from rasterio.features import rasterize

    with rasterio.open(scene) as ds:
        shape, transform = (ds.height, ds.width), ds.transform
    if labels.suffix == ".tif":
        with rasterio.open(labels) as lab:
            codes = lab.read(1)
        return np.isin(codes, wanted), codes > 0
    boxes = gpd.read_file(labels)
    if wanted is not None:
        boxes = boxes[boxes["class"].isin(wanted)]
    target = rasterize(((g, 1) for g in boxes.geometry), out_shape=shape, transform=transform, fill=0).astype(bool)
    return target, np.ones(shape, bool)


def run(seg, scene: Path, texts, folder: Path) -> tuple:
    import rasterio

    import rrsis_geo

    mask = folder / f"{scene.stem}_{seg.precision}.tif"
    started = time.perf_counter()
    rrsis_geo.predict(scene, texts, segmenter=seg, mask_out=mask)
    seconds = time.perf_counter() - started
    with rasterio.open(mask) as ds:
        return {t: ds.read(i + 1) == 1 for i, t in enumerate(texts)}, seconds


def iou(pred: np.ndarray, target: np.ndarray, valid: np.ndarray) -> float:
    union = np.count_nonzero((pred | target) & valid)
    return np.count_nonzero(pred & target & valid) / union if union else float("nan")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="checkpoint directory (default: the embedded default)")
    parser.add_argument("--precision", default="bf16", choices=("bf16", "auto"), help="compared with fp32")
    parser.add_argument("--compile", action="store_true", help="torch.compile the compared model (fp32 stays eager)")
    args = parser.parse_args(argv)
    import rrsis_geo

    models = {p: rrsis_geo.load_model(args.checkpoint, device="cpu", precision=p, compile=args.compile and p != "fp32")
              for p in ("fp32", args.precision)}
    compiled = ", compiled" if args.compile else ""
    print(f"model {models['fp32'].name}: fp32 against {models[args.precision].precision}{compiled}")
    print("| scene | expression | masks agree % | IoU fp32 | IoU other | run s fp32 | run s other |")
    print("|---|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="rrsis-precision-") as tmp:
        for scene_name, label_name, expressions in CASES:
            scene, labels = SAMPLES / scene_name, SAMPLES / label_name
            texts = list(expressions)
            (a, ta), (b, tb) = (run(models[p], scene, texts, Path(tmp)) for p in ("fp32", args.precision))
            for text in texts:
                target, valid = truth_mask(scene, labels, expressions[text])
                agree = 100.0 * np.count_nonzero(a[text] == b[text]) / a[text].size
                print(f"| {scene.stem} | {text} | {agree:.2f} | {iou(a[text], target, valid):.3f} | "
                      f"{iou(b[text], target, valid):.3f} | {ta:.1f} | {tb:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
