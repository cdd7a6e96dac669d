"""Fixtures for the geospatial pipeline (the data and models behind them: ``geo_testdata``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from geo_testdata import make_checkpoint, tokenizer_dir
from rrsis_geo.models import load_tokenizer



@pytest.fixture(scope="session")
def tokenizer():
    return load_tokenizer(tokenizer_dir())


@pytest.fixture(scope="session")
def red_checkpoint(tmp_path_factory, tokenizer) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "red", "test-red", tokenizer)


@pytest.fixture(scope="session")
def smooth_checkpoint(tmp_path_factory, tokenizer) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "smooth", "test-smooth", tokenizer)


@pytest.fixture(scope="session")
def plain_checkpoint(tmp_path_factory, tokenizer) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "plain", "test-plain", tokenizer)


@pytest.fixture(scope="session")
def red_segmenter(red_checkpoint):
    import rrsis_geo

    return rrsis_geo.load_model(red_checkpoint, device="cpu")
