"""Fit a checkpoint's per-category calibration on a split (:mod:`rrsis_geo.calibration`).

Usage::

    python -m training.calibrate --checkpoint runs/round4/best --data-root data/combined_refseg \
        --split SPLIT [--per-category 160] [--json report.json] [--dry-run] [--overwrite]

For each category: up to ``--per-category`` of its training triplets (every k-th, all templates)
and as many negatives -- crops of the same source that do not hold the category, asked for it by
its plain phrasing, whose target is empty. The model runs once over them as the library runs it
(:func:`rrsis_geo.load_model`, its precision); the offset is then chosen on a grid of logit
offsets to maximise the category's overall IoU (summed intersection over summed union) over the
positives and the negatives together: a lower threshold that finds more of the category but
marks it where it is absent pays for it. Among offsets within ``TOLERANCE`` of the best the one
closest to 0 wins, so that noise does not move a category that is already right. Samples are
grouped by their data set category; the library picks an expression's offset by the category it
understands the expression as naming, which for a paraphrase read as another category (or none)
differs: the report's "after" figures assume they agree.

The validation and test splits are refused: they stay the measure of what the calibration buys.
Use crops of images the model did not train on: on its own training crops a model looks
calibrated already and memorised rare kinds ask for the wrong offsets (measured, see
:mod:`rrsis_geo.calibration`); ``--split train`` is allowed for such diagnostics.
Writes ``calibration`` into the checkpoint's ``config.json`` (temporary file, then rename; an
existing calibration is replaced only with ``--overwrite``) and prints a table per category.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from rrsis_geo.calibration import MAX_OFFSET, raw_threshold, threshold_logit
from rrsis_geo.checkpoint_config import CONFIG_NAME, CheckpointConfig
from rrsis_geo.errors import InputError, OutputError, RRSISError
from rrsis_geo.io_utils import temp_path_beside

#: the offsets tried (logits); |offset| <= 3 keeps raw thresholds within [0.047, 0.953]
GRID = np.round(np.arange(-3.0, 3.0001, 0.125), 3)
#: offsets whose objective is within this of the best count as equally good (the one nearest 0 wins)
TOLERANCE = 0.005


@dataclass
class Counts:
    """Per grid offset: true positive, false positive and target pixels, summed over samples."""

    tp: np.ndarray = field(default_factory=lambda: np.zeros(len(GRID)))
    fp: np.ndarray = field(default_factory=lambda: np.zeros(len(GRID)))
    target: float = 0.0
    positives: int = 0
    negatives: int = 0

    def add(self, margin: np.ndarray, truth: np.ndarray) -> None:
        """One sample: ``margin`` = target logit minus background logit, ``truth`` its bool mask."""
        # a pixel is marked at offset g when margin + g >= 0: count pixels per bin of -margin
        edges = np.concatenate(([-np.inf], GRID + 1e-9, [np.inf]))
        for pixels, out in ((margin[truth], self.tp), (margin[~truth], self.fp)):
            hist, _ = np.histogram(-pixels, bins=edges)  # bin k: -margin in (GRID[k-1], GRID[k]]
            out += np.cumsum(hist)[: len(GRID)]
        self.target += float(truth.sum())
        if truth.any():
            self.positives += 1
        else:
            self.negatives += 1

    def iou(self) -> np.ndarray:
        return self.tp / np.maximum(self.target + self.fp, 1.0)

    def precision(self) -> np.ndarray:
        return self.tp / np.maximum(self.tp + self.fp, 1.0)

    def recall(self) -> np.ndarray:
        return self.tp / max(self.target, 1.0)


def choose_offset(counts: Counts) -> float:
    """The grid offset nearest 0 among those within :data:`TOLERANCE` of the best overall IoU."""
    iou = counts.iou()
    good = np.flatnonzero(iou >= iou.max() - TOLERANCE)
    return float(GRID[good[np.argmin(np.abs(GRID[good]))]])


def pick_samples(dataset: Any, table: Any, per_category: int, seed: int = 0) -> List[Tuple[int, int, str]]:
    """``(image sample, text sample, category)`` triples: each category's positives (every k-th of
    its triplets) and as many negatives (a crop of its source without it, its plain phrasing)."""
    rng = random.Random(seed)
    by_category: Dict[str, List[int]] = {}
    for index, sample in enumerate(dataset.samples):
        by_category.setdefault(sample.category, []).append(index)
    plain: Dict[Tuple[str, str], List[int]] = {}
    crops_of_source: Dict[str, List[int]] = {}
    for crop, holds in enumerate(table.category_sample):
        source = table.source_of_crop[crop]
        crops_of_source.setdefault(source, []).append(crop)
        for category, index in holds.items():
            plain.setdefault((source, category), []).append(index)
    first_member = {}
    for index, crop in enumerate(table.crop_of):
        first_member.setdefault(crop, index)
    picked: List[Tuple[int, int, str]] = []
    for category, indices in sorted(by_category.items()):
        step = max(1, len(indices) // per_category)
        positives = indices[::step][:per_category]
        picked += [(i, i, category) for i in positives]
        source = table.source_of_crop[table.crop_of[positives[0]]]
        phrasings = plain.get((source, category))
        lacking = [c for c in crops_of_source[source] if category not in table.category_sample[c]]
        if not phrasings or not lacking:
            continue
        for crop in rng.sample(lacking, min(len(positives), len(lacking))):
            picked.append((first_member[crop], rng.choice(phrasings), category))
    return picked


def collect(segmenter: Any, dataset: Any, picked: Sequence[Tuple[int, int, str]], batch_size: int = 8) -> Dict[str, Counts]:
    """Run the model over ``picked`` and count per category (see :class:`Counts`), at the
    checkpoint's threshold."""
    decision = threshold_logit(segmenter.threshold)
    counts: Dict[str, Counts] = {}
    model = segmenter.model
    for start in range(0, len(picked), batch_size):
        chunk = picked[start : start + batch_size]
        images = torch.stack([dataset[i]["image"] for i, _, _ in chunk]).to(segmenter.device)
        ids = torch.stack([dataset.input_ids[t] for _, t, _ in chunk]).to(segmenter.device)
        mask = torch.stack([dataset.attention_mask[t] for _, t, _ in chunk]).to(segmenter.device)
        with torch.inference_mode(), segmenter.autocast():
            logits = model(images, ids, mask)
        logits = torch.nn.functional.interpolate(logits.float(), size=images.shape[-2:], mode="bilinear", align_corners=False)
        margin = logits[:, 1] - logits[:, 0] if logits.shape[1] == 2 else logits[:, 0]
        # marked where sigmoid(margin + offset) >= threshold: count against logit(threshold)
        margins = (margin - decision).cpu().numpy()
        for (image_index, text_index, category), margin in zip(chunk, margins):
            truth = dataset[image_index]["mask"].numpy().astype(bool) if image_index == text_index else np.zeros_like(margin, bool)
            counts.setdefault(category, Counts()).add(margin, truth)
        done = min(start + batch_size, len(picked))
        if done == len(picked) or done // batch_size % 50 == 0:
            print(f"{done}/{len(picked)} samples", file=sys.stderr, flush=True)
    return counts


def report(counts: Dict[str, Counts], offsets: Dict[str, float], threshold: float = 0.5) -> List[Dict[str, Any]]:
    """Per category: the offset, its raw threshold, and IoU / precision / recall at 0 and at it."""
    zero = int(np.argmin(np.abs(GRID)))
    rows = []
    for category, c in sorted(counts.items()):
        k = int(np.argmin(np.abs(GRID - offsets[category])))
        rows.append({
            "category": category, "positives": c.positives, "negatives": c.negatives, "offset": offsets[category],
            "raw_threshold": round(raw_threshold(threshold, offsets[category]), 3),
            "iou_before": round(float(c.iou()[zero]), 4), "iou_after": round(float(c.iou()[k]), 4),
            "precision_before": round(float(c.precision()[zero]), 4), "precision_after": round(float(c.precision()[k]), 4),
            "recall_before": round(float(c.recall()[zero]), 4), "recall_after": round(float(c.recall()[k]), 4),
        })
    return rows


def markdown(rows: Sequence[Dict[str, Any]]) -> str:
    lines = ["| category | positives | negatives | offset | raw threshold | IoU | precision | recall |",
             "|---|---:|---:|---:|---:|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['category']} | {r['positives']} | {r['negatives']} | {r['offset']:+.3f} | {r['raw_threshold']:.3f} | "
                     f"{r['iou_before']:.3f} → {r['iou_after']:.3f} | {r['precision_before']:.2f} → {r['precision_after']:.2f} | "
                     f"{r['recall_before']:.2f} → {r['recall_after']:.2f} |")
    return "\n".join(lines)


def write_calibration(checkpoint: Path, offsets: Dict[str, float], fitted_on: str, *, overwrite: bool) -> None:
    """Put ``calibration`` into ``checkpoint/config.json`` atomically (checked as the library reads it)."""
    path = checkpoint / CONFIG_NAME
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("calibration") is not None and not overwrite:
        raise OutputError(f"{path} already holds a calibration; add --overwrite to replace it")
    config["calibration"] = {"offsets": offsets, "fitted_on": fitted_on}
    CheckpointConfig.from_dict(config, str(path))
    temp = temp_path_beside(path)
    try:
        temp.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        temp.replace(path)
    finally:
        temp.unlink(missing_ok=True)


def calibrate(checkpoint: Path, data_root: Path, split: str, per_category: int, batch_size: int = 8) -> Tuple[Dict[str, float], List[Dict[str, Any]], str]:
    """Offsets per category, the report rows and the ``fitted_on`` line (nothing written)."""
    import rrsis_geo

    from .datasets import build_dataset, detect_format
    from .datasets.crops import CropTable

    if split.startswith(("val", "test")):
        raise InputError(f"calibrate on a training split, not {split!r}: the validation split measures the result")
    segmenter = rrsis_geo.load_model(checkpoint, "cpu")
    dataset = build_dataset({"root": str(data_root), "categories": None, "image_dir": None}, split, segmenter.tokenizer, segmenter.config,
                            fmt=detect_format(data_root, split))
    table = CropTable.read(data_root, dataset)
    picked = pick_samples(dataset, table, per_category)
    counts = collect(segmenter, dataset, picked, batch_size)
    offsets = {c: float(np.clip(choose_offset(n), -MAX_OFFSET, MAX_OFFSET)) for c, n in counts.items()}
    fitted_on = (f"{data_root.name}/{split}: up to {per_category} triplets per category and as many crops without it; "
                 f"overall IoU, {segmenter.precision}")
    return offsets, report(counts, offsets, segmenter.threshold), fitted_on


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.calibrate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--split", required=True, help="crops of images the model did not train on (not val/test)")
    parser.add_argument("--per-category", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--json", type=Path, help="write the per-category report here as JSON")
    parser.add_argument("--dry-run", action="store_true", help="print the offsets, write nothing")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing calibration")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        if args.per_category < 1:
            raise InputError(f"--per-category must be at least 1, not {args.per_category}")
        config = CheckpointConfig.read(args.checkpoint)
        if config.calibration is not None and not (args.overwrite or args.dry_run):
            raise OutputError(f"{args.checkpoint} already holds a calibration; add --overwrite to replace it")
        offsets, rows, fitted_on = calibrate(args.checkpoint, args.data_root, args.split, args.per_category, args.batch_size)
        print(markdown(rows))
        if args.json:
            args.json.write_text(json.dumps({"fitted_on": fitted_on, "rows": rows}, indent=2) + "\n", encoding="utf-8")
        if not args.dry_run:
            write_calibration(args.checkpoint, offsets, fitted_on, overwrite=args.overwrite)
            print(f"calibration written to {args.checkpoint / CONFIG_NAME}")
    except RRSISError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
