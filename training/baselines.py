"""Two baselines that never look at the image, scored exactly like a model.

* **whole image**: every pixel is the target;
* **category mean mask**: for each category, the mean of its training masks on a fixed grid; a
  sample's prediction is its category's mean resized (bilinear) to the ground truth and thresholded
  at the category's own threshold, the one that maximises that category's mIoU on the *training*
  masks -- it knows where a category usually lies in a crop and how much of it there is, not what
  this image shows. A category without training samples gets the mean (and threshold) of all
  training masks. (A fixed 0.5 would be degenerate wherever no cell is target in most training
  crops: the mean then never reaches 0.5 and the baseline predicts nothing.)

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


def _training_masks(dataset: ReferringDataset, grid: int) -> Dict[str, torch.Tensor]:
    """Training masks on the ``grid x grid`` raster (values in [0, 1]), stacked per category and for :data:`ALL`."""
    stacks: Dict[str, List[torch.Tensor]] = {}
    for i, sample in enumerate(dataset.samples):
        mask = _resize(dataset.gt_mask(i), (grid, grid))
        for key in (sample.category, ALL):
            stacks.setdefault(key, []).append(mask)
    return {key: torch.stack(masks) for key, masks in stacks.items()}


def category_mean_masks(dataset: ReferringDataset, grid: int = 64) -> Dict[str, np.ndarray]:
    """Mean training mask per category on a ``grid x grid`` raster (plus :data:`ALL`)."""
    return {key: masks.mean(0).numpy() for key, masks in _training_masks(dataset, grid).items()}


def fit_threshold(prior: np.ndarray, masks: torch.Tensor, candidates: int = 64) -> float:
    """The threshold ``t`` for ``prior >= t`` with the best mean IoU over ``masks`` (N x grid x grid).

    Candidates are quantiles of the prior's values, so the lowest one predicts the whole image;
    IoU is scored like :func:`training.metrics.score_sample` (both empty: 1). Ties go to the
    higher threshold (the smaller prediction).
    """
    values = np.unique(np.quantile(prior, np.linspace(0.0, 1.0, candidates)))
    targets = masks > 0.5
    best_t, best_iou = float(values[0]), -1.0
    for t in values:
        pred = torch.as_tensor(prior >= t)[None]
        inter = (targets & pred).flatten(1).sum(1).double()
        union = (targets | pred).flatten(1).sum(1).double()
        iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union)).mean().item()
        if iou >= best_iou:
            best_t, best_iou = float(t), iou
    return best_t


def fit_mean_masks(dataset: ReferringDataset, grid: int = 64) -> Dict[str, tuple]:
    """``{category: (mean mask, threshold)}`` from the training split (plus :data:`ALL`)."""
    fitted = {}
    for key, masks in _training_masks(dataset, grid).items():
        prior = masks.mean(0).numpy()
        fitted[key] = (prior, fit_threshold(prior, masks))
    return fitted


def mean_mask_results(dataset: ReferringDataset, fitted: Dict[str, tuple]) -> List[SampleResult]:
    """Per-sample results of predicting each sample's category mean mask at its fitted threshold."""
    results = []
    for i, sample in enumerate(dataset.samples):
        gt = dataset.gt_mask(i)
        prior, threshold = fitted.get(sample.category, fitted[ALL])
        pred = (_resize(prior, gt.shape) >= threshold).numpy()
        results.append(score_sample(pred, gt, index=i, category=sample.category))
    return results


def run_baselines(
    data_root: os.PathLike, split: str, *, train_split: str = "train", dataset: Optional[str] = None, grid: int = 64
) -> Dict[str, Dict[str, Any]]:
    """Metrics of both baselines on ``split`` (mean masks from ``train_split``)."""
    fmt = dataset or detect_format(data_root, split)
    evaluated = _open(data_root, split, fmt, grid)
    fitted = fit_mean_masks(_open(data_root, train_split, fmt, grid), grid)
    out = {}
    for name, results in (
        ("whole image", whole_image_results(evaluated)),
        ("category mean mask", mean_mask_results(evaluated, fitted)),
    ):
        metrics = summarize(results)
        metrics.update({"dataset": fmt, "data_root": str(data_root), "split": split, "baseline": name})
        if name == "category mean mask":
            metrics["thresholds"] = {key: round(t, 4) for key, (_, t) in fitted.items()}
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
