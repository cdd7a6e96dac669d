#!/usr/bin/env python3
"""A/B training levers at a fixed wall-clock budget: train each arm for the same minutes, score it.

    PYTHONPATH=. .venv/bin/python scripts/ab_training.py --base training/configs/default_combined.yaml \
        --arm old=runs/ab/old.yaml --arm fast=runs/ab/fast.yaml --minutes 12 --out runs/ab [--val-limit 1500]

Each ``--arm NAME=FILE`` is a YAML mapping of settings merged over ``--base`` (as the training
config format: ``train: {num_threads: 2}``). Every arm runs in a process of its own, one after the
other (never two at once: they would share the cores), for ``--minutes`` of training
(``training.train --time-limit``; setup such as the text cache is timed apart), then is scored on:

* an evenly spaced subset of the validation crops (``training.evaluate --limit``), mIoU;
* the whole validation images (``scripts/evaluate_scenes.py``): Dubai and vehicles mIoU with the
  training words, pooled precision per category, and the share of heavy-duty vehicle pixels that
  "car" marks;
* every category of the crops: IoU, pooled precision / recall, and ``collapsed``: the categories
  whose recall fell under 10 % (round 2 of issue 21 lost bus, minibus and truck that way while
  every pooled figure improved).

Prints a Markdown table (samples/s = training samples over training seconds) and writes it with
every figure as JSON into ``--out``. Figures, never pass/fail.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training.config import deep_merge, validate  # noqa: E402


def run(command: List[str], log: Path, threads: int) -> float:
    """Run ``command`` (output to ``log``); its wall seconds. Raises on a non-zero exit."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1")
    started = time.perf_counter()
    with open(log, "w", encoding="utf-8") as out:
        done = subprocess.run(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
    if done.returncode:
        raise SystemExit(f"ab_training: {' '.join(command)} failed ({done.returncode}); see {log}")
    return time.perf_counter() - started


def training_figures(run_dir: Path, batch: int) -> Dict[str, Any]:
    """Epochs, iterations, training seconds and samples/s from a run's ``epochs.csv``."""
    with open(run_dir / "epochs.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    seconds = sum(float(r["seconds"]) for r in rows)
    iterations = len(rows) and int(json.loads((run_dir / "last" / "training_state.json").read_text())["schedule"]["iteration"])
    samples = iterations * batch
    return {"epochs": len(rows), "iterations": iterations, "samples": samples, "train_s": round(seconds, 1),
            "samples_per_s": round(samples / seconds, 3) if seconds else None}


def scene_figures(path: Path) -> Dict[str, Any]:
    """The whole-image figures an arm is compared on, from ``evaluate_scenes.py --json``."""
    result = json.loads(path.read_text(encoding="utf-8"))
    out: Dict[str, Any] = {}
    for source, summary in result["sources"].items():
        out[f"{source} mIoU"] = summary["mean"]["words"]
        for category, c in summary["categories"].items():
            out[f"{category} precision"] = c.get("words precision")
            out[f"{category} recall"] = c.get("words recall")
            out[f"{category} IoU"] = c.get("words")
            for key, value in c.items():
                if key.startswith("words on "):
                    out[f"{category} on {key[len('words on '):]}"] = value
    return out


#: a category whose pooled recall on the crops falls below this is reported as collapsed
COLLAPSE_RECALL = 0.10


def crop_figures(path: Path) -> Dict[str, Any]:
    """mIoU, and every category's crop IoU / pooled precision / recall, from ``training.evaluate
    --json``; ``collapsed`` names the categories the arm has all but stopped marking (a rare class
    can vanish while the pooled figures improve)."""
    result = json.loads(path.read_text(encoding="utf-8"))
    out: Dict[str, Any] = {"crops mIoU": round(100 * result["mIoU"], 2)}
    collapsed = []
    for key, entry in sorted(result.get("breakdown", {}).get("source / category", {}).items()):
        category = key.split(" / ", 1)[-1]
        out[f"crops {category} IoU"] = round(100 * entry["mIoU"], 2)
        if "recall" in entry:
            out[f"crops {category} P / R"] = f"{100 * entry['precision']:.0f} / {100 * entry['recall']:.0f}"
            if entry["recall"] < COLLAPSE_RECALL:
                collapsed.append(category)
    out["collapsed"] = ", ".join(collapsed) or "none"
    return out


def arm(name: str, settings: Dict[str, Any], args: argparse.Namespace) -> Dict[str, Any]:
    """Train, then score, one arm; its figures."""
    folder = args.out / name
    folder.mkdir(parents=True, exist_ok=True)
    config = validate(settings, source=name)
    config["name"] = f"ab-{name}"
    config_path = folder / "config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    threads = int(config["train"]["num_threads"] or 1)
    python = sys.executable
    run_dir = folder / "run"
    wall = run([python, "-m", "training.train", "--config", str(config_path), "--out", str(run_dir),
                "--time-limit", str(args.minutes), "--overwrite"], folder / "train.log", threads)
    figures: Dict[str, Any] = {"arm": name, "wall_s": round(wall, 1), **training_figures(run_dir, config["train"]["batch_size"])}
    checkpoint = run_dir / "last"
    crops = folder / "crops.json"
    run([python, "-m", "training.evaluate", "--checkpoint", str(checkpoint), "--data-root", config["data"]["root"],
         "--split", "val", "--limit", str(args.val_limit), "--json", str(crops), "--overwrite", "--batch-size", "8"],
        folder / "evaluate.log", args.eval_threads)
    figures.update(crop_figures(crops))
    if not args.no_scenes:
        scenes = folder / "scenes.json"
        run([python, "scripts/evaluate_scenes.py", "--checkpoint", str(checkpoint), "--threads", str(args.eval_threads),
             "--json", str(scenes), "--overwrite", "--quiet"], folder / "scenes.log", args.eval_threads)
        figures.update(scene_figures(scenes))
    return figures


def table(rows: List[Dict[str, Any]]) -> str:
    """The arms as a Markdown table (columns: what the first row has)."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join("—" if row.get(c) is None else str(row[c]) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=Path, required=True, help="training config every arm starts from")
    parser.add_argument("--arm", action="append", required=True, metavar="NAME=FILE",
                        help="an arm: a YAML file of settings merged over --base (repeat)")
    parser.add_argument("--minutes", type=float, required=True, help="training budget of every arm")
    parser.add_argument("--out", type=Path, required=True, help="folder for the arms' runs and the table")
    parser.add_argument("--val-limit", type=int, default=1500, help="validation crops scored per arm (default 1500)")
    parser.add_argument("--eval-threads", type=int, default=2, help="torch threads of the scoring runs (default 2)")
    parser.add_argument("--no-scenes", action="store_true", help="skip the whole-image scoring")
    parser.add_argument("--only", nargs="+", help="run only these arms (the table keeps the others' earlier figures)")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    base = yaml.safe_load(args.base.read_text(encoding="utf-8"))
    arms = []
    for entry in args.arm:
        name, _, file = entry.partition("=")
        if not name or not file:
            raise SystemExit(f"ab_training: --arm {entry!r}: give NAME=FILE")
        arms.append((name, deep_merge(base, yaml.safe_load(Path(file).read_text(encoding="utf-8")) or {})))
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "ab.json"
    earlier = {r["arm"]: r for r in json.loads(results_path.read_text())} if results_path.is_file() else {}
    rows = []
    for name, settings in arms:
        if args.only and name not in args.only:
            if name in earlier:
                rows.append(earlier[name])
            continue
        print(f"== arm {name}: {args.minutes:g} min", file=sys.stderr, flush=True)
        rows.append(arm(name, settings, args))
        results_path.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
        print(table(rows), file=sys.stderr, flush=True)
    text = table(rows)
    (args.out / "ab.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
