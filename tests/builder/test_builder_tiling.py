"""Crop windows cover scenes; the region split never lets a crop of one split touch another's."""

from __future__ import annotations

import numpy as np
import pytest

from rrsis_geo.errors import InputError
from training.builder.tiling import (allocate_blocks, crop_windows, grid_offsets, region_split,
                                     window_offsets, windows_leak)


@pytest.mark.parametrize("length", [384, 400, 509, 544, 797, 1200, 1817, 2061, 5616])
@pytest.mark.parametrize("window, stride", [(384, 192), (1200, 600), (256, 256), (300, 100)])
def test_window_offsets_cover_evenly(length, window, stride):
    offsets = window_offsets(length, window, stride)
    if length < window:
        assert offsets == []
        return
    assert offsets == sorted(offsets) and offsets[0] >= 0 and offsets[-1] + window <= length
    steps = np.diff(offsets)
    assert all(steps <= window) and all(steps > 0)
    if len(offsets) > 1:
        assert offsets[0] == 0 and offsets[-1] == length - window   # edge to edge
        assert steps.min() >= stride / 2 and steps.max() - steps.min() <= 1
    else:  # barely larger than a window: one centred window, a sliver left out
        assert length - window < stride / 2 + 1


def test_grid_offsets_are_on_the_stride_grid_plus_the_edge():
    assert grid_offsets(797, 384, 192) == [0, 192, 384, 413]
    assert grid_offsets(768, 384, 192) == [0, 192, 384]
    assert grid_offsets(300, 384, 192) == []


def test_allocate_blocks_gives_every_split_a_share():
    assert allocate_blocks(10, {"train": 0.7, "val": 0.15, "test": 0.15}) == \
        {"train": 7, "val": 2, "test": 1}  # a tie goes to the split listed first
    assert allocate_blocks(3, {"train": 0.98, "val": 0.01, "test": 0.01}) == \
        {"train": 1, "val": 1, "test": 1}
    assert allocate_blocks(5, {"train": 1.0, "test": 0.0}) == {"train": 5}
    with pytest.raises(InputError, match="only 2 region block"):
        allocate_blocks(2, {"train": 0.5, "val": 0.25, "test": 0.25})


@pytest.mark.parametrize("height, width, window, stride, block, seed", [
    (1000, 1400, 128, 64, 256, 0),
    (1000, 1400, 128, 64, 256, 1),
    (777, 913, 100, 50, 230, 2),
    (3744, 5616, 1200, 600, 1800, 0),   # a SkyScapes tile with the paper's windows
    (2061, 1817, 384, 192, 768, 0),
    (640, 640, 64, 64, 128, 5),         # no overlap between windows
])
def test_region_split_never_leaks(height, width, window, stride, block, seed):
    fractions = {"train": 0.6, "val": 0.2, "test": 0.2}
    result = region_split(height, width, window, stride, block, fractions, seed)
    assert windows_leak(result.windows) == []
    # every kept window lies inside blocks of its own split only
    code = {name: i for i, name in enumerate(fractions)}
    owner = np.full((height, width), -1, dtype=np.int8)
    for cell, split in result.blocks:
        owner[cell.row_off:cell.row_end, cell.col_off:cell.col_end] = code[split]
    assert (owner >= 0).all()                    # blocks tile the scene
    for split, windows in result.windows.items():
        for w in windows:
            part = owner[w.row_off:w.row_end, w.col_off:w.col_end]
            assert part.min() == part.max() == code[split]
    total = len(crop_windows(height, width, window, stride, grid=True))
    kept = sum(len(w) for w in result.windows.values())
    assert kept + result.dropped == total
    assert (result.dropped > 0) == (stride < window)  # only overlapping windows can straddle
    assert all(result.windows[s] for s in fractions)  # every split got crops


def test_region_split_is_seeded():
    a = region_split(1000, 1000, 100, 50, 200, {"train": 0.5, "val": 0.5}, seed=0)
    b = region_split(1000, 1000, 100, 50, 200, {"train": 0.5, "val": 0.5}, seed=0)
    c = region_split(1000, 1000, 100, 50, 200, {"train": 0.5, "val": 0.5}, seed=1)
    assert a.windows == b.windows and a.windows != c.windows


def test_region_split_refuses_blocks_smaller_than_the_window():
    with pytest.raises(InputError, match="block size"):
        region_split(1000, 1000, 300, 150, 200, {"train": 1.0})
