"""Train a referring segmentation model from a YAML config.

Usage::

    python -m training.train --config training/configs/lgce_refsegrs.yaml \
        [--data-root DIR] [--out DIR] [--epochs N] [--device cpu|cuda|auto] [--resume]
        [--overwrite] [--workers N] [--threads N] [--stop-after N] [--time-limit MIN]

    # several GPUs (one process each), one or more nodes:
    torchrun --nproc_per_node 4 -m training.train --config ... --out runs/x
    torchrun --nnodes 2 --node_rank R --master_addr HOST --nproc_per_node 4 -m training.train ...

``--out`` defaults to ``runs/<config name>``. It receives ``best/`` (highest validation mIoU)
and ``last/`` (resume point), both checkpoints ``rrsis-geo predict --checkpoint`` takes
directly, plus ``iterations.csv``, ``epochs.csv``, ``train_config.json`` and TensorBoard
events when TensorBoard is installed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import List, Optional

from rrsis_geo.errors import RRSISError

from .config import load_config, with_overrides
from .engine import train


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="training config YAML (see training/configs/)")
    parser.add_argument("--data-root", help="dataset directory (overrides data.root)")
    parser.add_argument("--out", help="run directory (default: runs/<config name>)")
    parser.add_argument("--epochs", type=int, help="number of epochs (overrides train.epochs)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="overrides train.device")
    parser.add_argument("--workers", type=int, help="data loading worker processes (overrides data.num_workers)")
    parser.add_argument("--threads", type=int, help="torch CPU threads per process (overrides train.num_threads)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last/ checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="start a new run over an existing --out")
    parser.add_argument(
        "--stop-after", type=int, metavar="N",
        help="stop after N epochs of this invocation (wall-time limited jobs); continue later with --resume",
    )
    parser.add_argument(
        "--time-limit", type=float, metavar="MIN",
        help="begin no epoch after MIN minutes of training (a fixed budget, e.g. for A/B runs); --resume continues",
    )
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    """Command-line entry (also callable in-process); returns the exit status."""
    args = parse_args(argv)
    try:
        cfg = with_overrides(
            load_config(args.config),
            data_root=args.data_root,
            epochs=args.epochs,
            device=args.device,
            num_workers=args.workers,
            num_threads=args.threads,
        )
        out = Path(args.out) if args.out else Path("runs") / str(cfg["name"])
        summary = train(
            cfg, out, resume=args.resume, overwrite=args.overwrite, stop_after=args.stop_after,
            time_limit_s=None if args.time_limit is None else 60.0 * args.time_limit,
        )
    except RRSISError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if int(os.environ.get("RANK", "0")) == 0:
        best = summary["best_value"]
        score = (f"best validation {summary['best_metric']} {100 * best:.2f} (epoch {summary['best_epoch']})"
                 if best is not None else "no validation")
        print(f"done: {score}; checkpoints in {summary['best']} and {summary['last']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
