#!/usr/bin/env python3
"""Markdown tables for a model card, straight from evaluation JSON (figures, never typed by hand).

    PYTHONPATH=. .venv/bin/python scripts/card_tables.py \
        --scenes "new=runs/x/scenes.json" --scenes "previous=runs/y/scenes.json" \
        --crops "new=runs/x/crops.json" --crops "previous=runs/y/crops.json" [--ab runs/ab/ab.json]

``--scenes``: ``scripts/evaluate_scenes.py --json`` results (whole validation images);
``--crops``: ``training.evaluate --json`` results (validation crops, with their breakdown);
``--ab``: ``scripts/ab_training.py``'s ``ab.json``. Every option repeats, one model each, in the
column order given.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, List, Optional


def _named(items: List[str]) -> Dict[str, dict]:
    out = {}
    for item in items:
        name, _, path = item.partition("=")
        out[name] = json.loads(Path(path).read_text(encoding="utf-8"))
    return out


def _cell(value: Optional[float], digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def scene_tables(results: Dict[str, dict]) -> List[str]:
    """Per source and category: IoU with the training word, precision, recall; everyday IoU."""
    names = list(results)
    first = results[names[0]]
    lines = ["| source / category | " + " | ".join(f"{n}: IoU (P / R), everyday IoU" for n in names) + " | whole image |",
             "|---|" + "---:|" * (len(names) + 1)]
    for source, summary in first["sources"].items():
        for category in summary["categories"]:
            cells = []
            for n in names:
                c = results[n]["sources"][source]["categories"][category]
                cells.append(f"{_cell(c['words'])} ({_cell(c.get('words precision'), 0)} / {_cell(c.get('words recall'), 0)}), "
                             f"{_cell(c['everyday'])}")
            lines.append(f"| {source} {category} | " + " | ".join(cells) + f" | {_cell(summary['categories'][category]['whole image'])} |")
        means = [f"**{_cell(results[n]['sources'][source]['mean']['words'])}**, "
                 f"{_cell(results[n]['sources'][source]['mean']['everyday'])}" for n in names]
        lines.append(f"| **{source}, mean** | " + " | ".join(means) + f" | {_cell(summary['mean']['whole image'])} |")
    confusion = []
    for n in names:
        for summary in results[n]["sources"].values():
            for category, c in summary["categories"].items():
                for key, value in c.items():
                    if key.startswith("words on ") and value is not None:
                        confusion.append(f"{n}: '{category}' marks {value:.1f} % of the {key[len('words on '):]} pixels")
    return lines + ([""] + ["; ".join(confusion) + "."] if confusion else [])


def crop_tables(results: Dict[str, dict]) -> List[str]:
    """mIoU overall, per source x phrasing and per source x category."""
    names = list(results)
    lines = ["| crops: mIoU (pooled precision / recall) | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    lines.append("| all, mIoU / oIoU | " + " | ".join(f"{100 * results[n]['mIoU']:.2f} / {100 * results[n]['oIoU']:.2f}" for n in names) + " |")
    for grouping in ("source / phrasing", "source / category", "source / template"):
        for key in results[names[0]]["breakdown"].get(grouping, {}):
            row = []
            for n in names:
                entry = results[n]["breakdown"].get(grouping, {}).get(key)
                pr = f" ({100 * entry['precision']:.0f} / {100 * entry['recall']:.0f})" if entry and "precision" in entry else ""
                row.append("—" if entry is None else f"{100 * entry['mIoU']:.2f}{pr}")
            samples = results[names[0]]["breakdown"][grouping][key]["samples"]
            lines.append(f"| {key} ({samples}) | " + " | ".join(row) + " |")
    return lines


AB_COLUMNS = [("samples_per_s", "samples/s"), ("samples", "samples"), ("crops mIoU", "crops mIoU"),
              ("dubai mIoU", "Dubai mIoU"), ("vehicles mIoU", "vehicles mIoU"), ("water precision", "water P"),
              ("building precision", "building P"), ("car precision", "car P"),
              ("car on heavy-duty vehicle", "car on heavy %")]


def ab_table(rows: List[dict]) -> List[str]:
    lines = ["| arm | " + " | ".join(label for _, label in AB_COLUMNS) + " |", "|---|" + "---:|" * len(AB_COLUMNS)]
    for row in rows:
        lines.append(f"| {row['arm']} | " + " | ".join(str(row.get(key, "—")) for key, _ in AB_COLUMNS) + " |")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", action="append", default=[], metavar="NAME=JSON")
    parser.add_argument("--crops", action="append", default=[], metavar="NAME=JSON")
    parser.add_argument("--ab", type=Path)
    args = parser.parse_args(argv)
    blocks = []
    if args.scenes:
        blocks.append(scene_tables(_named(args.scenes)))
    if args.crops:
        blocks.append(crop_tables(_named(args.crops)))
    if args.ab:
        blocks.append(ab_table(json.loads(args.ab.read_text(encoding="utf-8"))))
    print("\n\n".join("\n".join(block) for block in blocks))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
