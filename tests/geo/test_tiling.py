"""Tile grid, blend window and the bounded strip accumulator."""

import numpy as np
import pytest
import torch

from rrsis_geo.tiling import (
    BLEND_FLOOR,
    StripAccumulator,
    TileGrid,
    axis_starts,
    blend_window,
    blend_window_1d,
    pad_reflect,
)


@pytest.mark.parametrize("size,footprint,stride", [(300, 64, 48), (64, 64, 48), (65, 64, 48), (1000, 512, 384), (203, 64, 16)])
def test_axis_starts_cover_the_axis_and_shift_the_last_tile_inward(size, footprint, stride):
    starts = axis_starts(size, footprint, stride)
    assert starts[0] == 0
    assert starts[-1] == size - footprint  # ends exactly on the edge, no padding past the data
    assert all(b > a for a, b in zip(starts, starts[1:]))
    assert all(b - a <= stride for a, b in zip(starts, starts[1:]))
    covered = np.zeros(size, bool)
    for s in starts:
        covered[s : s + footprint] = True
    assert covered.all()


def test_a_region_smaller_than_a_tile_gets_one_tile():
    assert axis_starts(40, 64, 48) == [0]
    grid = TileGrid(40, 30, (64, 64), 0.25)
    tiles = list(grid)
    assert len(tiles) == 1 and (tiles[0].height, tiles[0].width) == (40, 30)


def test_grid_counts_and_row_major_order():
    grid = TileGrid(300, 250, (64, 64), 0.25)
    assert grid.strides == (48, 48)
    rows, cols = grid.shape
    assert (rows, cols) == (len(axis_starts(300, 64, 48)), len(axis_starts(250, 64, 48)))
    tiles = list(grid)
    assert len(tiles) == len(grid) == rows * cols
    assert [t.index for t in tiles] == list(range(len(tiles)))
    assert [(t.grid_row, t.grid_col) for t in tiles] == [(i, j) for i in range(rows) for j in range(cols)]


def test_blend_window_is_smooth_symmetric_and_never_zero():
    w = blend_window_1d(64)
    assert w.min() >= BLEND_FLOOR and w.min() > 0
    assert w.max() <= 1.0
    np.testing.assert_allclose(w, w[::-1], rtol=0, atol=1e-7)
    assert np.abs(np.diff(w, 2)).max() < 0.01  # no kinks
    w2 = blend_window(5, 7).numpy()
    assert w2.shape == (5, 7) and (w2 > 0).all()
    np.testing.assert_allclose(w2, np.outer(blend_window_1d(5), blend_window_1d(7)))


def _accumulate(grid: TileGrid, field: np.ndarray, channels: int = 2):
    """Blend tiles cut from ``field`` (each tile a noisy copy) and return the flushed result."""
    acc = StripAccumulator(grid.width, grid.tile_height, channels)
    out = np.full((channels, grid.height, grid.width), np.nan, np.float32)
    valid_out = np.zeros((grid.height, grid.width), bool)
    last_col = grid.shape[1] - 1
    held = []
    for tile in grid:
        sl = (slice(tile.row_off, tile.row_off + tile.height), slice(tile.col_off, tile.col_off + tile.width))
        probs = torch.from_numpy(np.stack([field[sl]] * channels))
        acc.add(tile.row_off, tile.col_off, probs, blend_window(tile.height, tile.width), None)
        held.append(acc.max_rows_in_flight)
        if tile.grid_col == last_col:
            row0, p, v = acc.flush(grid.final_row(tile.grid_row))
            out[:, row0 : row0 + p.shape[1]] = p.numpy()
            valid_out[row0 : row0 + p.shape[1]] = v.numpy()
    return acc, out, valid_out, held


def test_accumulator_reproduces_a_field_that_every_tile_agrees_on():
    grid = TileGrid(203, 171, (64, 64), 0.25)
    yy, xx = np.mgrid[0:203, 0:171].astype(np.float32)
    field = (np.sin(yy / 17) * np.cos(xx / 23) * 0.5 + 0.5).astype(np.float32)
    acc, out, valid, _ = _accumulate(grid, field)
    assert valid.all()
    np.testing.assert_allclose(out[0], field, atol=1e-5)
    np.testing.assert_allclose(out[1], field, atol=1e-5)
    assert acc.top == 203


def test_accumulator_memory_is_one_tile_tall_whatever_the_scene_height():
    footprint = 64
    sizes = {}
    for height in (500, 5000):
        grid = TileGrid(height, 100, (footprint, footprint), 0.25)
        field = np.ones((height, 100), np.float32)
        acc, out, _, held = _accumulate(grid, field, channels=3)
        assert acc.capacity == footprint
        assert max(held) <= footprint  # never more rows in flight than one tile
        np.testing.assert_allclose(out, 1.0, atol=1e-5)
        sizes[height] = acc.nbytes
    # sum(p*w) for 3 channels + sum(w) as float32, valid as bool: width x tile height
    assert sizes[500] == sizes[5000] == 100 * footprint * (3 * 4 + 4 + 1)


def test_accumulator_refuses_rows_outside_its_ring():
    acc = StripAccumulator(10, 8, 1)
    acc.add(0, 0, torch.ones(1, 8, 10), torch.ones(8, 10), None)
    with pytest.raises(RuntimeError):
        acc.add(4, 0, torch.ones(1, 8, 10), torch.ones(8, 10), None)  # would need 12 rows
    acc.flush(4)
    acc.add(4, 0, torch.ones(1, 8, 10), torch.ones(8, 10), None)  # now fits (wraps the ring)
    with pytest.raises(RuntimeError):
        acc.add(2, 0, torch.ones(1, 2, 10), torch.ones(2, 10), None)  # already flushed


def test_invalid_pixels_come_out_as_zero_and_invalid():
    acc = StripAccumulator(4, 4, 1)
    valid = torch.tensor([[True, False, True, True]] * 4)
    acc.add(0, 0, torch.full((1, 4, 4), 0.8), torch.ones(4, 4), valid)
    _, p, v = acc.flush(4)
    assert torch.equal(v, valid)
    assert torch.all(p[0][~valid] == 0) and torch.allclose(p[0][valid], torch.tensor(0.8))


def test_pad_reflect_keeps_the_data_in_the_top_left_corner():
    data = np.arange(3 * 5 * 7, dtype=np.uint8).reshape(3, 5, 7)
    padded = pad_reflect(data, 16, 16)
    assert padded.shape == (3, 16, 16)
    np.testing.assert_array_equal(padded[:, :5, :7], data)
    assert pad_reflect(np.ones((3, 1, 1), np.uint8), 4, 4).shape == (3, 4, 4)
