"""Run logging: stdout, CSV files and (when installed) TensorBoard, from the main process only.

``OUT/iterations.csv`` gets one row per logged iteration (loss parts, learning rates),
``OUT/epochs.csv`` one row per epoch (mean training loss, seconds, validation metrics).
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, TextIO

from .metrics import PRECISION_THRESHOLDS


#: columns of epochs.csv (validation columns stay empty in epochs without validation)
EPOCH_COLUMNS = ["epoch", "train_loss", "seconds", "val_seconds"] + [f"Pr@{t:.1f}" for t in PRECISION_THRESHOLDS] + [
    "oIoU", "mIoU", "category_average",
]


class CSVLog:
    """Append rows to a CSV file; columns are ``fields``, else those of the first row ever written."""

    def __init__(self, path: Path, fields: Optional[list] = None):
        self.path = path
        self.fields: Optional[list] = list(fields) if fields else None

    def write(self, row: Mapping[str, Any]) -> None:
        new = not (self.path.is_file() and self.path.stat().st_size)
        if self.fields is None:
            if new:
                self.fields = list(row)
            else:  # a resumed run appends under the existing header
                with open(self.path, newline="", encoding="utf-8") as handle:
                    self.fields = next(csv.reader(handle))
        with open(self.path, "a", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({k: _fmt(v) for k, v in row.items()})


def _fmt(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value


class RunLogger:
    """Everything a run reports; a no-op on processes other than the main one."""

    def __init__(self, out_dir: Path, enabled: bool, tensorboard: Any = "auto", stream: TextIO = sys.stdout):
        self.enabled = enabled
        self.stream = stream
        self.started = time.time()
        self.iterations = CSVLog(out_dir / "iterations.csv") if enabled else None
        self.epochs = CSVLog(out_dir / "epochs.csv", EPOCH_COLUMNS) if enabled else None
        self.out_dir = out_dir
        self.want_tensorboard = enabled and bool(tensorboard)
        self.explicit_tensorboard = tensorboard is True
        self._tb = None

    @property
    def tb(self):
        """The TensorBoard writer, created on first use (so nothing is written before training starts)."""
        if self._tb is None and self.want_tensorboard:
            self.want_tensorboard = False
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                if self.explicit_tensorboard:
                    self.info("tensorboard is not installed; logging to CSV only")
            else:
                self._tb = SummaryWriter(log_dir=str(self.out_dir / "tensorboard"))
        return self._tb

    def info(self, message: str) -> None:
        if self.enabled:
            elapsed = time.time() - self.started
            print(f"[{elapsed:8.1f}s] {message}", file=self.stream, flush=True)

    def iteration(self, step: int, row: Dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.iterations.write(row)
        if self.tb is not None:
            for key, value in row.items():
                if isinstance(value, float) and key not in ("epoch", "iteration"):
                    self.tb.add_scalar(f"train/{key}", value, step)

    def epoch(self, epoch: int, row: Dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.epochs.write(row)
        if self.tb is not None:
            for key, value in row.items():
                if isinstance(value, (int, float)) and key != "epoch":
                    self.tb.add_scalar(f"epoch/{key}", value, epoch)
            self.tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
