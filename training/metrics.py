"""The papers' metrics: Pr@0.5..0.9, oIoU, mIoU and per-category IoU.

All are computed per sample at the ground-truth mask's own resolution:

* IoU of a sample = |prediction AND truth| / |prediction OR truth|. When both are empty the
  union is 0; we count that sample as **IoU 1** (the prediction is exactly right). The RefSegRS
  reference code counts it as 0; the choice only matters for datasets with empty targets (our
  builder can write them; the published benchmarks have none).
* mIoU = mean of the per-sample IoUs;
* oIoU = cumulative intersection / cumulative union over the split (1 if the union is 0);
* Pr@t = share of samples whose IoU is *above* t, t in 0.5 .. 0.9 (the LAVT code uses >=; the
  two differ only for IoUs exactly on a threshold);
* per-category IoU = mean IoU of the samples of one category (BTDNet Tables III/IV); the
  "average" row is the mean over categories.

Values are fractions in 0..1; the Markdown table shows percentages as the papers do.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np
import torch

#: IoU of a sample whose prediction and ground truth are both empty
EMPTY_IOU = 1.0
#: thresholds of the Pr@t columns
PRECISION_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass
class SampleResult:
    """Scores of one image-expression pair."""

    index: int
    category: str
    intersection: int
    union: int

    @property
    def iou(self) -> float:
        return self.intersection / self.union if self.union else EMPTY_IOU


def score_sample(prediction: Any, truth: Any, index: int = 0, category: str = "") -> SampleResult:
    """Intersection and union of two bool masks of the same shape (numpy or torch)."""
    pred = torch.as_tensor(prediction).bool()
    gt = torch.as_tensor(truth).bool()
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and ground truth {tuple(gt.shape)} differ in shape")
    inter = int((pred & gt).sum())
    union = int((pred | gt).sum())
    return SampleResult(index=int(index), category=str(category), intersection=inter, union=union)


def summarize(results: Sequence[SampleResult]) -> Dict[str, Any]:
    """All metrics of a split from its per-sample results (see module docstring)."""
    if not results:
        raise ValueError("no samples to summarise")
    ious = np.array([r.iou for r in results], dtype=np.float64)
    inter = sum(r.intersection for r in results)
    union = sum(r.union for r in results)
    metrics: Dict[str, Any] = {"samples": len(results)}
    for t in PRECISION_THRESHOLDS:
        metrics[f"Pr@{t:.1f}"] = float((ious > t).mean())
    metrics["oIoU"] = inter / union if union else EMPTY_IOU
    metrics["mIoU"] = float(ious.mean())
    groups: Dict[str, List[float]] = {}
    for r, iou in zip(results, ious):
        groups.setdefault(r.category, []).append(float(iou))
    metrics["per_category"] = {
        name: {"IoU": float(np.mean(values)), "samples": len(values)} for name, values in sorted(groups.items())
    }
    metrics["category_average"] = float(np.mean([v["IoU"] for v in metrics["per_category"].values()]))
    return metrics


def results_to_rows(results: Iterable[SampleResult]) -> List[Dict[str, Any]]:
    """Plain dicts (for gathering across processes or writing to CSV)."""
    return [asdict(r) for r in results]


def results_from_rows(rows: Iterable[Mapping[str, Any]]) -> List[SampleResult]:
    """Inverse of :func:`results_to_rows`."""
    return [SampleResult(**dict(row)) for row in rows]


def _pct(value: float) -> str:
    return f"{100.0 * value:.2f}"


def markdown_table(metrics: Mapping[str, Any], title: Optional[str] = None, categories_order: Optional[Sequence[str]] = None) -> str:
    """The metrics as two Markdown tables (overall, then per category), percentages."""
    keys = [f"Pr@{t:.1f}" for t in PRECISION_THRESHOLDS] + ["oIoU", "mIoU"]
    lines: List[str] = []
    if title:
        lines += [f"**{title}**", ""]
    lines.append("| samples | " + " | ".join(keys) + " |")
    lines.append("|---:|" + "---:|" * len(keys))
    lines.append(f"| {metrics['samples']} | " + " | ".join(_pct(metrics[k]) for k in keys) + " |")
    per = metrics.get("per_category") or {}
    if per:
        names = [c for c in (categories_order or []) if c in per] + sorted(c for c in per if c not in (categories_order or []))
        lines += ["", "| category | samples | IoU |", "|---|---:|---:|"]
        for name in names:
            lines.append(f"| {name} | {per[name]['samples']} | {_pct(per[name]['IoU'])} |")
        lines.append(f"| *average over categories* | {metrics['samples']} | {_pct(metrics['category_average'])} |")
    return "\n".join(lines) + "\n"
