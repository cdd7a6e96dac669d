"""Fixtures of the fault suite; every fault a test provokes is recorded with its exit status,
message and what was left on disk, and printed as a table at the end of a verbose run
(``pytest tests/faults -v``) or with ``RRSIS_FAULT_TABLE=1``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Tuple

import pytest

import fault_testdata  # (importing it registers the test architectures)
from geo_testdata import make_checkpoint, tokenizer_dir

_ROWS: List[Tuple[str, str, str, str]] = []


@pytest.fixture(scope="session")
def tokenizer_for_faults():
    from rrsis_geo.models import load_tokenizer

    return load_tokenizer(tokenizer_dir())


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory, tokenizer_for_faults) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "red", "test-red", tokenizer_for_faults)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A textured GeoTIFF the test checkpoint segments."""
    return fault_testdata.textured_scene(tmp_path_factory.mktemp("scene") / "scene.tif")


@pytest.fixture()
def record():
    """``record(fault, status, message, left_on_disk)`` adds a row to the closing table."""

    def add(fault: str, status, message: str, left) -> None:
        text = " ".join(str(message).split())
        _ROWS.append((fault, str(status), text, ", ".join(left) if not isinstance(left, str) else left))

    return add


def pytest_terminal_summary(terminalreporter, config) -> None:
    if not _ROWS or not (config.option.verbose > 0 or os.environ.get("RRSIS_FAULT_TABLE")):
        return
    write = terminalreporter.write_line
    terminalreporter.section("faults provoked: exit status, message, left on disk")
    write("| fault | exit | message | on disk afterwards |")
    write("|---|---|---|---|")
    for fault, status, message, left in _ROWS:
        write(f"| {fault} | {status} | {message.replace('|', '/')} | {left} |")
