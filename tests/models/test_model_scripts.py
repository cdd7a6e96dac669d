"""The summary and benchmark scripts run (figures are printed, never asserted)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_model_summary(capsys):
    assert load("model_summary").main(["--presets", "tiny-lgce", "tiny-btdnet"]) == 0
    out = capsys.readouterr().out
    assert "tiny-lgce" in out and "tiny-btdnet" in out and "vision" in out


def test_bench_models_on_cpu(capsys):
    args = ["--device", "cpu", "--batch-size", "1", "--size", "64", "--configs", "tiny-lgce", "--dtype", "fp32"]
    assert load("bench_models").main(args + ["--warmup", "0", "--iters", "1"]) == 0
    out = capsys.readouterr().out
    assert "tiny-lgce" in out and "eager" in out and "failed" not in out
