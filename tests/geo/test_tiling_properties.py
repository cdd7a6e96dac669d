"""Property tests (hypothesis) of the window arithmetic: tile grids, strip flushing, resampled
tile shapes. Pure arithmetic, so hundreds of cases run in about a second."""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rrsis_geo.grid import TilePlan, TileGrid, axis_starts, stride_for
from rrsis_geo.tiling import StripAccumulator, blend_window

sizes = st.integers(1, 3000)
footprints = st.integers(1, 700)
overlaps = st.floats(0.0, 0.89, allow_nan=False)


@settings(max_examples=400, deadline=None)
@given(size=sizes, footprint=footprints, overlap=overlaps)
def test_axis_starts_tile_the_axis_inside_it_with_at_most_one_stride_between(size, footprint, overlap):
    stride = stride_for(footprint, overlap)
    starts = axis_starts(size, footprint, stride)
    assert starts[0] == 0 and all(b > a for a, b in zip(starts, starts[1:]))
    assert all(b - a <= stride for a, b in zip(starts, starts[1:]))
    if size >= footprint:
        assert starts[-1] == size - footprint  # the last tile ends on the edge, never past it
    else:
        assert starts == [0]
    # consecutive tiles touch or overlap, so every pixel is covered
    assert all(b <= a + min(footprint, size) for a, b in zip(starts, starts[1:]))
    assert 1 <= stride <= footprint


@settings(max_examples=300, deadline=None)
@given(height=sizes, width=sizes, fh=st.integers(8, 700), fw=st.integers(8, 700), overlap=overlaps)
def test_grid_tiles_stay_inside_the_region_and_strips_are_flushed_in_order(height, width, fh, fw, overlap):
    grid = TileGrid(height, width, (fh, fw), overlap)
    rows, cols = grid.shape
    assert len(grid) == rows * cols
    assert (grid.tile_height, grid.tile_width) == (min(fh, height), min(fw, width))
    finals = [grid.final_row(i) for i in range(rows)]
    assert finals[-1] == height and all(b > a for a, b in zip(finals, finals[1:]))
    assert grid.row_starts[-1] + grid.tile_height == height and grid.col_starts[-1] + grid.tile_width == width


@settings(max_examples=300, deadline=None)
@given(height=sizes, width=sizes, scene_over_model=st.floats(0.05, 20.0), tile=st.integers(16, 512), overlap=overlaps)
def test_resampled_tiles_fit_the_model_input_and_keep_their_aspect(height, width, scene_over_model, tile, overlap):
    footprint = max(1, round(tile / scene_over_model))  # as plan_tiles: tile * model_gsd / scene_gsd
    plan = TilePlan(TileGrid(height, width, (footprint, footprint), overlap), tile, footprint != tile)
    for t in (next(iter(plan.grid)),):  # every tile of a grid has the same shape
        mh, mw = plan.content_shape(t)
        assert 1 <= mh <= tile and 1 <= mw <= tile
        if plan.resample and t.height == footprint and t.width == footprint:
            assert (mh, mw) == (tile, tile)  # a whole footprint fills the model input exactly
        if not plan.resample:
            assert (mh, mw) == (t.height, t.width)


@settings(max_examples=40, deadline=None)
@given(height=st.integers(1, 90), width=st.integers(1, 90), f=st.integers(4, 40), overlap=overlaps)
def test_the_one_tile_tall_ring_reproduces_any_field_every_tile_agrees_on(height, width, f, overlap):
    grid = TileGrid(height, width, (f, f), overlap)
    field = np.random.default_rng(height * 131 + width).random((height, width), dtype=np.float32)
    acc = StripAccumulator(grid.width, grid.tile_height, 1)
    out = np.full((height, width), np.nan, np.float32)
    last_col = grid.shape[1] - 1
    for t in grid:
        sl = (slice(t.row_off, t.row_off + t.height), slice(t.col_off, t.col_off + t.width))
        acc.add(t.row_off, t.col_off, torch.from_numpy(field[sl][None].copy()), blend_window(t.height, t.width), None)
        if t.grid_col == last_col:
            row0, p, v = acc.flush(grid.final_row(t.grid_row))
            assert v.all()
            out[row0 : row0 + p.shape[1]] = p[0].numpy()
    np.testing.assert_allclose(out, field, atol=1e-5)
    assert acc.max_rows_in_flight <= grid.tile_height
