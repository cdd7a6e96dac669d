"""Two baselines that never look at the image, scored exactly like a model.

* **whole image**: every pixel is the target;
* **category mean mask**: for each category, the mean of its training masks on a fixed grid; a
  sample's prediction is its category's mean resized (bilinear) to the ground truth and thresholded
  at 0.5 -- it knows where a category usually lies in a crop and how much of it there is, not what
  this image shows. A category without training samples gets the mean of all training masks.

Usage::

    python -m training.baselines --data-root DIR --split val [--train-split train]
        [--dataset refsegrs|rrsisd] [--grid 64] [--out table.md] [--json metrics.json]

A model's table (``training.evaluate``) is worth something only where it beats both.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F

from rrsis_geo.errors import OutputError, RRSISError

from .datasets import ReferringDataset, build_dataset, detect_format
from .metrics import SampleResult, markdown_table, score_sample, summarize

#: key of the mean over all training masks (for categories unseen in training)
ALL = "*"


def _open(data_root: os.PathLike, split: str, fmt: str, grid: int) -> ReferringDataset:
    # masks only: no tokenizer, and image settings that are never used
    settings = {"input_size": grid, "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}
    return build_dataset({"root": str(data_root)}, split, None, settings, fmt=fmt)


def _resize(mask: np.ndarray, size: tuple) -> torch.Tensor:
    tensor = torch.as_tensor(mask, dtype=torch.float32)[None, None]
    return F.interpolate(tensor, size=size, mode="bilinear", align_corners=False)[0, 0]


def whole_image_results(dataset: ReferringDataset) -> List[SampleResult]:
    """Per-sample results of predicting every pixel as the target."""
    results = []
    for i, sample in enumerate(dataset.samples):
        gt = dataset.gt_mask(i)
        results.append(score_sample(np.ones_like(gt), gt, index=i, category=sample.category))
    return results


def category_mean_masks(dataset: ReferringDataset, grid: int = 64) -> Dict[str, np.ndarray]:
    """Mean training mask per category on a ``grid x grid`` raster (plus :data:`ALL`)."""
    sums: Dict[str, torch.Tensor] = {}
    counts: Dict[str, int] = {}
    for i, sample in enumerate(dataset.samples):
        mask = _resize(dataset.gt_mask(i), (grid, grid))
        for key in (sample.category, ALL):
            sums[key] = sums.get(key, torch.zeros(grid, grid)) + mask
            counts[key] = counts.get(key, 0) + 1
    return {key: (sums[key] / counts[key]).numpy() for key in sums}


def mean_mask_results(dataset: ReferringDataset, means: Dict[str, np.ndarray], threshold: float = 0.5) -> List[SampleResult]:
    """Per-sample results of predicting each sample's category mean mask above ``threshold``."""
    results = []
    for i, sample in enumerate(dataset.samples):
        gt = dataset.gt_mask(i)
        prior = means.get(sample.category, means[ALL])
        results.append(score_sample(_resize(prior, gt.shape) > threshold, gt, index=i, category=sample.category))
    return results


def run_baselines(
    data_root: os.PathLike, split: str, *, train_split: str = "train", dataset: Optional[str] = None, grid: int = 64
) -> Dict[str, Dict[str, Any]]:
    """Metrics of both baselines on ``split`` (mean masks from ``train_split``)."""
    fmt = dataset or detect_format(data_root, split)
    evaluated = _open(data_root, split, fmt, grid)
    means = category_mean_masks(_open(data_root, train_split, fmt, grid), grid)
    out = {}
    for name, results in (
        ("whole image", whole_image_results(evaluated)),
        ("category mean mask", mean_mask_results(evaluated, means)),
    ):
        metrics = summarize(results)
        metrics.update({"dataset": fmt, "data_root": str(data_root), "split": split, "baseline": name})
        metrics["categories_order"] = list(getattr(evaluated, "vocabulary", []))
        out[name] = metrics
    return out


def main(argv: Optional[List[str]] = None) -> int:
    """Command-line entry; prints one table per baseline and returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m training.baselines", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", required=True, help="dataset directory (RefSegRS format or RRSIS-D)")
    parser.add_argument("--split", default="val", help="split to score (default: val)")
    parser.add_argument("--train-split", default="train", help="split the mean masks come from (default: train)")
    parser.add_argument("--dataset", choices=("refsegrs", "rrsisd"), help="dataset format (default: detected)")
    parser.add_argument("--grid", type=int, default=64, help="raster size of the mean masks (default 64)")
    parser.add_argument("--out", help="also write the Markdown tables to this file")
    parser.add_argument("--json", help="also write the metrics as JSON to this file")
    parser.add_argument("--overwrite", action="store_true", help="replace existing --out/--json files")
    args = parser.parse_args(argv)
    try:
        for target in (args.out, args.json):
            if target and Path(target).exists() and not args.overwrite:
                raise OutputError(f"{target} exists; pass --overwrite to replace it")
        metrics = run_baselines(args.data_root, args.split, train_split=args.train_split, dataset=args.dataset, grid=args.grid)
    except RRSISError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    tables = []
    for name, values in metrics.items():
        title = f"baseline '{name}' on {values['dataset']} {args.split} ({args.data_root})"
        tables.append(markdown_table(values, title=title, categories_order=values.pop("categories_order")))
    text = "\n".join(tables)
    print(text, end="")
    for target, content in ((args.out, text), (args.json, json.dumps(metrics, indent=2) + "\n")):
        if target:
            path = Path(target)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(content, encoding="utf-8")
            os.replace(tmp, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
