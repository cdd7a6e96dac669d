"""Evaluate a checkpoint on a dataset split: the papers' metrics as a Markdown table.

Usage::

    python -m training.evaluate --checkpoint runs/lgce-refsegrs/best --data-root data/RefSegRS \
        --split test [--dataset refsegrs|rrsisd] [--out table.md] [--json metrics.json]

Predictions are the model's inference output (``model(images, ids, mask)``), its logits resized
bilinearly to each ground truth's own resolution and thresholded at the checkpoint's
``threshold`` on the target probability. ``--paper-code-scoring`` scores as the reference code
that produced the published tables instead (Pr@t with >=, empty-on-empty IoU 0, scored at the
input size). See :mod:`training.metrics` for the metrics and the conventions.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Sampler, Subset

from rrsis_geo.checkpoint_config import CheckpointConfig
from rrsis_geo.errors import OutputError, RRSISError
from rrsis_geo.models import load_checkpoint, load_tokenizer

from .datasets import build_dataset, collate, detect_format
from .distributed import pick_device
from .metrics import DEFAULT_SCORING, PAPER_CODE_SCORING, SampleResult, Scoring, markdown_table, score_sample, summarize


class ShardSampler(Sampler):
    """Every ``world_size``-th index from ``rank``: each sample evaluated exactly once overall."""

    def __init__(self, length: int, rank: int = 0, world_size: int = 1):
        self.indices = list(range(rank, length, world_size))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def autocast(device: torch.device, precision: str):
    """bf16 autocast when asked for (CUDA or CPU); a no-op context for float32."""
    if precision == "bf16" and device.type in ("cuda", "cpu"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def predict_masks(
    logits: torch.Tensor, sizes: Sequence[Sequence[int]], threshold: float = 0.5, offsets: Optional[Sequence[float]] = None
) -> List[torch.Tensor]:
    """Bool masks at each ground truth's size from ``[B, 2, h, w]`` logits, each sample's target
    logit moved by its calibration offset (:mod:`rrsis_geo.calibration`) where ``offsets`` are given."""
    masks = []
    for i, size in enumerate(sizes):
        resized = F.interpolate(logits[i : i + 1].float(), size=tuple(size), mode="bilinear", align_corners=False)
        margin = resized[0, 1] - resized[0, 0] + (offsets[i] if offsets is not None else 0.0)
        masks.append(torch.sigmoid(margin) > threshold)  # = softmax(...)[1] without an offset
    return masks


def resize_mask(mask: Any, size: Sequence[int]) -> torch.Tensor:
    """A 0/1 mask resized by nearest neighbour to ``size`` (bool)."""
    tensor = torch.as_tensor(mask).float()[None, None]
    return F.interpolate(tensor, size=tuple(size), mode="nearest")[0, 0] > 0.5


@torch.no_grad()
def evaluate_loader(
    model: torch.nn.Module,
    loader: Iterable[Dict[str, Any]],
    device: torch.device,
    *,
    precision: str = "fp32",
    threshold: float = 0.5,
    score_size: str = "ground_truth",
    offsets: Optional[Mapping[str, float]] = None,
) -> List[SampleResult]:
    """Per-sample results of ``model`` over a loader of items with ``gt_mask``, scored at each
    truth's size or (``score_size="input"``) at the input size with the truth resized (nearest).
    ``offsets``: the calibration's logit offset per expression (absent: 0)."""
    was_training = model.training
    model.eval()
    results: List[SampleResult] = []
    try:
        for batch in loader:
            with autocast(device, precision):
                logits = model(
                    batch["image"].to(device, non_blocking=True),
                    batch["input_ids"].to(device, non_blocking=True),
                    batch["attention_mask"].to(device, non_blocking=True),
                )
            gts = batch["gt_mask"]
            if score_size == "input":
                gts = [resize_mask(gt, logits.shape[-2:]) for gt in gts]
            shifts = [offsets.get(e, 0.0) for e in batch["expression"]] if offsets else None
            preds = predict_masks(logits, [gt.shape for gt in gts], threshold, shifts)
            for pred, gt, index, category in zip(preds, gts, batch["index"].tolist(), batch["category"]):
                results.append(score_sample(pred.cpu(), gt, index=index, category=category))
    finally:
        model.train(was_training)
    return results


def evaluate_checkpoint(
    checkpoint: os.PathLike,
    data_root: os.PathLike,
    split: str,
    *,
    dataset: Optional[str] = None,
    batch_size: int = 4,
    num_workers: int = 0,
    device: str = "auto",
    threshold: Optional[float] = None,
    categories: Optional[Sequence[str]] = None,
    image_dir: Optional[str] = None,
    scoring: Scoring = DEFAULT_SCORING,
    precision: str = "auto",
    limit: Optional[int] = None,
    calibrated: bool = True,
) -> Dict[str, Any]:
    """Metrics of a checkpoint on one split (plus ``dataset``/``split``/``checkpoint`` fields).

    ``calibrated``: apply the checkpoint's calibration as the library does (each expression's
    offset from the category it is understood as naming); without one in the checkpoint, nothing.

    ``precision``: ``auto`` (bf16 on CUDA, float32 on the CPU), ``bf16`` or ``fp32``. ``limit``:
    score every k-th sample only, about ``limit`` in all (quick comparisons; the same subset
    for every checkpoint)."""
    model, config = load_checkpoint(checkpoint)
    tokenizer = load_tokenizer(checkpoint)
    fmt = dataset or detect_format(data_root, split)
    data = {"root": str(data_root), "categories": list(categories) if categories else None, "image_dir": image_dir}
    ds = build_dataset(data, split, tokenizer, config, return_gt=True, fmt=fmt)
    card = CheckpointConfig.from_dict(config)
    chosen = range(len(ds)) if not limit or limit >= len(ds) else range(0, len(ds), -(-len(ds) // int(limit)))
    subset = ds if len(chosen) == len(ds) else Subset(ds, chosen)
    offsets = expression_offsets(model, tokenizer, config, checkpoint, [ds.samples[i].expression for i in chosen]) \
        if calibrated and card.calibration is not None else None
    torch_device = pick_device(device)
    model.to(torch_device)
    loader = DataLoader(subset, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate)
    if precision == "auto":
        precision = "bf16" if torch_device.type == "cuda" else "fp32"
    results = evaluate_loader(
        model, loader, torch_device, precision=precision,
        threshold=float(threshold if threshold is not None else card.threshold),
        score_size=scoring.score_size, offsets=offsets,
    )
    metrics = summarize(results, scoring)
    groups = breakdown(results, ds.samples, scoring)
    if groups:
        metrics["breakdown"] = groups
    metrics.update({"dataset": fmt, "data_root": str(data_root), "split": split, "checkpoint": str(checkpoint),
                    "calibrated": offsets is not None})
    metrics["categories_order"] = list(getattr(ds, "vocabulary", []))
    return metrics


def expression_offsets(model: torch.nn.Module, tokenizer: Any, config: Mapping[str, Any], checkpoint: os.PathLike,
                       expressions: Sequence[str]) -> Dict[str, float]:
    """The calibration offset of each distinct expression, decided as the library decides it."""
    from rrsis_geo.segmenter import Segmenter

    segmenter = Segmenter(model, tokenizer, config, device="cpu", checkpoint=Path(checkpoint), precision="fp32",
                          channels_last=False)
    return {e: segmenter.calibration_offset(e) for e in dict.fromkeys(expressions)}


#: groupings of :func:`breakdown`: a name and the sample fields that make a group's key
GROUPINGS = (("source", ("source",)), ("phrasing", ("phrasing",)),
             ("source / phrasing", ("source", "phrasing")), ("source / category", ("source", "category")),
             ("category / phrasing", ("category", "phrasing")), ("source / template", ("source", "template")))


def breakdown(
    results: Sequence[SampleResult], samples: Sequence[Any], scoring: Scoring = DEFAULT_SCORING
) -> Dict[str, Dict[str, Dict[str, float]]]:
    """mIoU and oIoU per source, per seen/held-out phrasing and their crossings with category,
    for data sets whose samples record them (empty otherwise), under ``scoring``'s conventions."""
    out: Dict[str, Dict[str, Dict[str, float]]] = {}
    for name, fields in GROUPINGS:
        groups: Dict[str, List[SampleResult]] = {}
        for r in results:
            sample = samples[r.index]
            values = [getattr(sample, f, None) for f in fields]
            if all(v is not None for v in values):
                groups.setdefault(" / ".join(map(str, values)), []).append(r)
        if groups:
            out[name] = {key: _group_scores(rs, scoring) for key, rs in sorted(groups.items())}
    return out


def _group_scores(results: Sequence[SampleResult], scoring: Scoring) -> Dict[str, float]:
    """mIoU, oIoU and, where the predicted areas are recorded, pooled precision and recall."""
    inter, union = sum(r.intersection for r in results), sum(r.union for r in results)
    scores = {"samples": len(results), "mIoU": sum(r.iou_with(scoring.empty_iou) for r in results) / len(results),
              "oIoU": inter / union if union else 0.0}
    if all(r.predicted >= 0 for r in results):
        predicted, target = sum(r.predicted for r in results), sum(r.target for r in results)
        scores["precision"] = inter / predicted if predicted else 0.0
        scores["recall"] = inter / target if target else 0.0
    return scores


def breakdown_table(groups: Dict[str, Dict[str, Dict[str, float]]]) -> str:
    """The breakdown as Markdown tables (percentages)."""
    lines: List[str] = []
    for name, rows in groups.items():
        lines += ["", f"| {name} | samples | mIoU | oIoU |", "|---|---:|---:|---:|"]
        for key, row in rows.items():
            lines.append(f"| {key} | {row['samples']} | {100 * row['mIoU']:.2f} | {100 * row['oIoU']:.2f} |")
    return "\n".join(lines) + ("\n" if lines else "")


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.evaluate",
        description="Pr@0.5..0.9, oIoU, mIoU and per-category IoU of a checkpoint on a dataset split.",
    )
    parser.add_argument("--checkpoint", required=True, help="checkpoint directory (e.g. runs/NAME/best)")
    parser.add_argument("--data-root", required=True, help="dataset directory (RefSegRS format or RRSIS-D)")
    parser.add_argument("--split", default="val", help="split to score: train, val or test (default: val)")
    parser.add_argument("--dataset", choices=("refsegrs", "rrsisd"), help="dataset format (default: detected)")
    parser.add_argument("--out", help="also write the Markdown table to this file")
    parser.add_argument("--json", help="also write the metrics as JSON to this file")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--workers", type=int, default=0, help="data loading worker processes")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--threshold", type=float, help="target probability threshold (default: the checkpoint's)")
    parser.add_argument("--categories", nargs="+", help="category vocabulary for RefSegRS-format per-category IoU")
    parser.add_argument("--image-dir", help="RRSIS-D image directory, when not in the standard place")
    parser.add_argument("--overwrite", action="store_true", help="replace existing --out/--json files")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                        help="auto: bf16 autocast on CUDA, float32 on the CPU; bf16 also on a CPU with native bf16")
    parser.add_argument("--limit", type=int, help="score an evenly spaced subset of about this many samples")
    parser.add_argument("--uncalibrated", action="store_true",
                        help="ignore the checkpoint's calibration (the model's own probabilities)")
    parser.add_argument(
        "--paper-code-scoring", action="store_true",
        help="score as the reference code behind the published tables: Pr@t counts IoU >= t, an empty "
        "prediction of an empty truth scores 0, masks compared at the model's input size",
    )
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    """Command-line entry; prints the table and returns the exit status."""
    args = parse_args(argv)
    try:
        for target in (args.out, args.json):
            if target and Path(target).exists() and not args.overwrite:
                raise OutputError(f"{target} exists; pass --overwrite to replace it")
        metrics = evaluate_checkpoint(
            args.checkpoint, args.data_root, args.split,
            dataset=args.dataset, batch_size=args.batch_size, num_workers=args.workers, device=args.device,
            threshold=args.threshold, categories=args.categories, image_dir=args.image_dir,
            scoring=PAPER_CODE_SCORING if args.paper_code_scoring else DEFAULT_SCORING,
            precision=args.precision, limit=args.limit, calibrated=not args.uncalibrated,
        )
    except RRSISError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    title = f"{Path(args.checkpoint).name} on {metrics['dataset']} {args.split} ({args.data_root})"
    table = markdown_table(metrics, title=title, categories_order=metrics.pop("categories_order"))
    table += breakdown_table(metrics.get("breakdown") or {})
    print(table, end="")
    if args.out:
        _atomic_write(Path(args.out), table)
    if args.json:
        _atomic_write(Path(args.json), json.dumps(metrics, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
