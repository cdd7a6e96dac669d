"""Fixtures of the batch tests: a counted test model, generated scenes, a real local Dask cluster
(started and stopped by the command under test, in the test's own process or a subprocess)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for folder in (HERE, HERE.parent / "geo", HERE.parent / "faults"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import batch_model  # noqa: E402 - registers test-counted (and, through geo_testdata, test-red)
from geo_testdata import make_checkpoint, tokenizer_dir  # noqa: E402


@pytest.fixture(scope="session")
def counted_checkpoint(tmp_path_factory) -> Path:
    from rrsis_geo.models import load_tokenizer

    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "counted", "test-counted", load_tokenizer(tokenizer_dir()),
                           input_size=32, gsd_m=0.5)


@pytest.fixture
def worker_env(monkeypatch, tmp_path):
    """What the cluster's worker processes need: this folder importable, the counted model
    registered, a file counting the model calls (one line per call)."""
    calls = tmp_path / "calls.txt"
    path = os.pathsep.join([str(HERE), str(HERE.parent / "geo"), os.environ.get("PYTHONPATH", "")]).strip(os.pathsep)
    monkeypatch.setenv("PYTHONPATH", path)
    monkeypatch.setenv("RRSIS_EXTENSIONS", "batch_model")
    monkeypatch.setenv(batch_model.CALLS_ENV, str(calls))
    return calls


__all__ = ["batch_model"]
