"""The papers' metrics: Pr@0.5..0.9, oIoU, mIoU and per-category IoU.

All are computed per sample:

* IoU of a sample = |prediction AND truth| / |prediction OR truth|;
* mIoU = mean of the per-sample IoUs;
* oIoU = cumulative intersection / cumulative union over the split (1 if the union is 0);
* Pr@t = share of samples whose IoU passes t, t in 0.5 .. 0.9;
* per-category IoU = mean IoU of the samples of one category (BTDNet Tables III/IV); the
  "average" row is the mean over categories.

Three conventions differ between the papers' wording and the code that produced their tables
(the LAVT/RRSIS reference ``train.py``); each is a switch (:class:`Scoring`, training config
section ``eval``, ``training.evaluate`` flags):

* ``pr_inclusive`` -- Pr@t counts IoU *>= t* (the code) or *> t* (the papers' wording, the default
  here); they differ only for IoUs exactly on a threshold;
* ``empty_iou`` -- the IoU of a sample whose prediction and truth are both empty: 1.0 (the
  prediction is exactly right; the default here) or 0.0 (the code, which scores any zero
  intersection as 0); it matters only for datasets with empty targets (our builder can write
  them; the published benchmarks have none);
* ``score_size`` (used by :mod:`training.evaluate`) -- score at each ground truth's own resolution
  (the default here) or at the model's input size with the truth resized by nearest neighbour
  (the code, whose data transform resizes the mask with the image).

The paper configs (``training/configs/*_refsegrs.yaml``, ``*_rrsisd.yaml``) set all three to the
code's conventions, so that their numbers compare with the published tables.

Values are fractions in 0..1; the Markdown table shows percentages as the papers do.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np
import torch

#: IoU of a sample whose prediction and ground truth are both empty (default)
EMPTY_IOU = 1.0
#: where predictions are scored: each ground truth's own size, or the model's input size
SCORE_SIZES = ("ground_truth", "input")


@dataclass(frozen=True)
class Scoring:
    """The metric conventions of the module docstring."""

    pr_inclusive: bool = False
    empty_iou: float = EMPTY_IOU
    score_size: str = "ground_truth"

    def __post_init__(self) -> None:
        if self.score_size not in SCORE_SIZES:
            raise ValueError(f"score_size must be one of {SCORE_SIZES}, not {self.score_size!r}")
        if self.empty_iou not in (0.0, 1.0):
            raise ValueError(f"empty_iou must be 0 or 1, not {self.empty_iou!r}")


#: this project's conventions (the papers' wording where it is explicit)
DEFAULT_SCORING = Scoring()
#: the conventions of the reference code that produced the published tables
PAPER_CODE_SCORING = Scoring(pr_inclusive=True, empty_iou=0.0, score_size="input")
#: thresholds of the Pr@t columns
PRECISION_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass
class SampleResult:
    """Scores of one image-expression pair."""

    index: int
    category: str
    intersection: int
    union: int
    predicted: int = -1  # pixels predicted as the target (-1: not recorded, e.g. older result rows)

    @property
    def target(self) -> int:
        """Pixels of the ground truth (-1 when ``predicted`` is not recorded)."""
        return self.union - self.predicted + self.intersection if self.predicted >= 0 else -1

    @property
    def iou(self) -> float:
        return self.iou_with(EMPTY_IOU)

    def iou_with(self, empty_iou: float) -> float:
        """The IoU, with ``empty_iou`` for a sample whose union is empty."""
        return self.intersection / self.union if self.union else float(empty_iou)


def score_sample(prediction: Any, truth: Any, index: int = 0, category: str = "") -> SampleResult:
    """Intersection and union of two bool masks of the same shape (numpy or torch)."""
    pred = torch.as_tensor(prediction).bool()
    gt = torch.as_tensor(truth).bool()
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and ground truth {tuple(gt.shape)} differ in shape")
    inter = int((pred & gt).sum())
    union = int((pred | gt).sum())
    return SampleResult(index=int(index), category=str(category), intersection=inter, union=union,
                        predicted=int(pred.sum()))


def summarize(results: Sequence[SampleResult], scoring: Scoring = DEFAULT_SCORING) -> Dict[str, Any]:
    """All metrics of a split from its per-sample results (see module docstring)."""
    if not results:
        raise ValueError("no samples to summarise")
    ious = np.array([r.iou_with(scoring.empty_iou) for r in results], dtype=np.float64)
    inter = sum(r.intersection for r in results)
    union = sum(r.union for r in results)
    metrics: Dict[str, Any] = {"samples": len(results)}
    for t in PRECISION_THRESHOLDS:
        passed = ious >= t if scoring.pr_inclusive else ious > t
        metrics[f"Pr@{t:.1f}"] = float(passed.mean())
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
