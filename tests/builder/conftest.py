"""Fixtures of tests/builder (helpers live in builder_testdata.py)."""

from __future__ import annotations

import pytest
from builder_testdata import base_config

from training.builder import parse_config


@pytest.fixture
def config():
    """The test vocabulary with the paper's seven relations at their default thresholds."""
    return parse_config(base_config())
