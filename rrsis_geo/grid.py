"""Where the tiles go: the tile grid over a region and the plan of a scene's tiles (no torch).

The grid covers the processed region with tiles of a fixed footprint that overlap; the last tile
of a row or column is shifted inward so that it ends on the region's edge. A :class:`TilePlan`
adds the model's tile size and whether tiles are resampled to the model's ground sample
distance. Planning needs no torch: ``rrsis-geo info`` and the plan of a run stay light; the
blending of tiles and the strip accumulator are in :mod:`rrsis_geo.tiling`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, List, Optional, Tuple

from .errors import Fix, InputError

if TYPE_CHECKING:  # pragma: no cover
    from .raster import RasterSource

#: resampling to the model's GSD is automatic when the scene's GSD differs by more than this factor
AUTO_RESAMPLE_FACTOR = 1.25


def axis_starts(size: int, footprint: int, stride: int) -> List[int]:
    """Tile start offsets along one axis; the last tile is shifted inward to end at ``size``."""
    if size <= footprint:
        return [0]
    starts = list(range(0, size - footprint, stride))
    starts.append(size - footprint)
    return starts


def stride_for(footprint: int, overlap: float) -> int:
    """Distance between tile starts for a given overlap fraction (at least one pixel)."""
    return max(1, int(round(footprint * (1.0 - overlap))))


@dataclass(frozen=True)
class Tile:
    """One tile: its grid position and its window inside the processed region (pixels)."""

    index: int
    grid_row: int
    grid_col: int
    row_off: int
    col_off: int
    height: int
    width: int


@dataclass(frozen=True)
class TileGrid:
    """Overlapping tiles over a ``height x width`` region, in row-major order."""

    height: int
    width: int
    footprint: Tuple[int, int]  # (rows, cols) of region pixels per tile
    overlap: float

    @property
    def strides(self) -> Tuple[int, int]:
        return stride_for(self.footprint[0], self.overlap), stride_for(self.footprint[1], self.overlap)

    @property
    def row_starts(self) -> List[int]:
        return axis_starts(self.height, self.footprint[0], self.strides[0])

    @property
    def col_starts(self) -> List[int]:
        return axis_starts(self.width, self.footprint[1], self.strides[1])

    @property
    def shape(self) -> Tuple[int, int]:
        """Number of tile rows and tile columns."""
        return len(self.row_starts), len(self.col_starts)

    def __len__(self) -> int:
        rows, cols = self.shape
        return rows * cols

    @property
    def tile_height(self) -> int:
        return min(self.footprint[0], self.height)

    @property
    def tile_width(self) -> int:
        return min(self.footprint[1], self.width)

    def __iter__(self) -> Iterator[Tile]:
        h, w = self.tile_height, self.tile_width
        index = 0
        for i, r in enumerate(self.row_starts):
            for j, c in enumerate(self.col_starts):
                yield Tile(index, i, j, r, c, h, w)
                index += 1

    def final_row(self, grid_row: int) -> int:
        """Rows above this are final once tile row ``grid_row`` has been accumulated."""
        starts = self.row_starts
        return starts[grid_row + 1] if grid_row + 1 < len(starts) else self.height


def tiles_for(height: int, width: int, tile: int, overlap: float) -> int:
    """How many tiles a ``height x width`` region needs (no resampling)."""
    return len(TileGrid(height, width, (tile, tile), overlap))


def grid_rows_done(grid: TileGrid, tile: Tile) -> Optional[int]:
    """If ``tile`` is the last of its tile row, the region row up to which rows are final."""
    if tile.grid_col == grid.shape[1] - 1:
        return grid.final_row(tile.grid_row)
    return None


@dataclass(frozen=True)
class TilePlan:
    """How a scene is cut: the grid in scene pixels and the model's tile size."""

    grid: TileGrid
    model_size: int  # tile edge in model pixels
    resample: bool  # footprint differs from model_size: tiles are resampled in and out

    @property
    def footprint(self) -> Tuple[int, int]:
        return self.grid.footprint

    def content_shape(self, tile: Tile) -> Tuple[int, int]:
        """Size of the tile's data in model pixels (== model_size unless the region is smaller)."""
        if not self.resample:
            return tile.height, tile.width
        fh, fw = self.footprint
        return (
            max(1, min(self.model_size, round(tile.height * self.model_size / fh))),
            max(1, min(self.model_size, round(tile.width * self.model_size / fw))),
        )


def resolve_resample(source: "RasterSource", model_gsd: Optional[float], resample: Optional[bool]) -> bool:
    """Whether to resample the scene to ``model_gsd`` (``resample`` None = automatic)."""
    if resample is False:
        return False
    if not model_gsd or source.gsd is None:
        if resample:
            why = "the model's config has no gsd_m" if not model_gsd else "the scene has no CRS"
            raise InputError(f"cannot resample to the model's ground sample distance: {why}", fix=Fix("resample", False))
        return False
    if resample:
        return True
    ratios = [model_gsd / g for g in source.gsd if g > 0]
    return any(abs(math.log(r)) > math.log(AUTO_RESAMPLE_FACTOR) for r in ratios)


def plan_tiles(
    source: "RasterSource",
    tile_size: int,
    overlap: float,
    *,
    model_gsd: Optional[float] = None,
    resample: Optional[bool] = None,
) -> TilePlan:
    """Tile grid over ``source.region`` for a model taking ``tile_size`` px tiles."""
    if tile_size < 16:
        raise InputError(f"tile size {tile_size} is too small; use at least 16 px (the model's input size is best)")
    if not 0.0 <= overlap < 0.9:
        raise InputError(f"overlap {overlap} must be a fraction in [0, 0.9), e.g. 0.25")
    do_resample = resolve_resample(source, model_gsd, resample)
    footprint = (tile_size, tile_size)
    if do_resample:
        gx, gy = source.gsd  # type: ignore[misc]
        footprint = (max(1, round(tile_size * model_gsd / gy)), max(1, round(tile_size * model_gsd / gx)))
        do_resample = footprint != (tile_size, tile_size)
    grid = TileGrid(source.region.height, source.region.width, footprint, overlap)
    return TilePlan(grid, tile_size, do_resample)
