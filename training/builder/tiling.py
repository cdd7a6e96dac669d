"""Crop windows over a scene and the region split of one scene into train/val/test.

Windows are square, ``window`` px. Along each axis of a scene that goes wholly to one split they
are spread evenly from edge to edge, as many as the requested ``stride`` gives when rounded (the
actual stride is within ±50 % of it and never more than a window): the scene is covered without
padding and without near-duplicate windows at its edges. An axis less than half a stride longer
than the window gets one centred window (up to a quarter stride is left out on each side). A
scene smaller than one window gives none.

Region split (a scene that has no split of its own): windows lie on the stride grid (0, stride,
2·stride, … and one flush with the end); the scene is cut into blocks whose edges lie on that
grid; blocks are shuffled (seeded) and shared out to the splits in proportion to the fractions;
a window is kept only if every block it touches belongs to one split. Blocks are disjoint, so
windows of different splits never share a pixel.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from rrsis_geo.errors import InputError


@dataclass(frozen=True, order=True)
class CropWindow:
    """A pixel window of the source scene (rows/columns, half-open)."""

    row_off: int
    col_off: int
    height: int
    width: int

    @property
    def row_end(self) -> int:
        return self.row_off + self.height

    @property
    def col_end(self) -> int:
        return self.col_off + self.width

    def intersects(self, other: "CropWindow") -> bool:
        return (self.row_off < other.row_end and other.row_off < self.row_end
                and self.col_off < other.col_end and other.col_off < self.col_end)

    def as_dict(self) -> dict[str, int]:
        return {"col_off": self.col_off, "row_off": self.row_off, "width": self.width,
                "height": self.height}


def window_offsets(length: int, window: int, stride: int) -> list[int]:
    """Start offsets along one axis, evenly spread from 0 to ``length - window`` (see above)."""
    if length < window:
        return []
    span = length - window
    steps = round(span / stride)
    if steps == 0:
        return [span // 2]
    steps = max(steps, math.ceil(span / window))
    return [round(i * span / steps) for i in range(steps + 1)]


def grid_offsets(length: int, window: int, stride: int) -> list[int]:
    """Start offsets on the stride grid (0, stride, 2·stride, …) plus one flush with the end;
    used by the region split, whose block edges lie on the same grid."""
    if length < window:
        return []
    offsets = list(range(0, length - window + 1, stride))
    if offsets[-1] + window < length:
        offsets.append(length - window)
    return offsets


def crop_windows(height: int, width: int, window: int, stride: int,
                 grid: bool = False) -> list[CropWindow]:
    """All crop windows of a ``height`` × ``width`` scene, row by row (``grid``: on the stride
    grid, as the region split needs, instead of evenly spread)."""
    offsets = grid_offsets if grid else window_offsets
    return [CropWindow(r, c, window, window)
            for r in offsets(height, window, stride)
            for c in offsets(width, window, stride)]


def block_edges(length: int, block: int, stride: int) -> list[int]:
    """Edges of ``max(1, length // block)`` near-equal blocks along one axis, snapped to the
    stride grid so that windows starting on the grid fit inside them."""
    n = max(1, length // block)
    inner = [int(round(i * length / n / stride)) * stride for i in range(1, n)]
    return sorted({0, *inner, length})


def allocate_blocks(n_blocks: int, fractions: Mapping[str, float]) -> dict[str, int]:
    """How many blocks each split gets: largest remainder, but every split with a positive
    fraction gets at least one block."""
    positive = {k: v for k, v in fractions.items() if v > 0}
    if n_blocks < len(positive):
        raise InputError(
            f"the scene has only {n_blocks} region block(s) but {len(positive)} splits "
            f"({', '.join(positive)}) need one each; lower the block size (--block-size), give "
            "fewer splits (--fractions), or list several scenes with a split each (--scenes)")
    total = sum(positive.values())
    exact = {k: n_blocks * v / total for k, v in positive.items()}
    counts = {k: int(np.floor(x)) for k, x in exact.items()}
    by_remainder = sorted(exact, key=lambda k: exact[k] - counts[k], reverse=True)
    for k in by_remainder[:n_blocks - sum(counts.values())]:
        counts[k] += 1
    for k in positive:
        if counts[k] == 0:  # take one from the split that has most
            donor = max(counts, key=counts.get)
            counts[donor] -= 1
            counts[k] = 1
    return counts


@dataclass(frozen=True)
class RegionSplit:
    """Windows kept per split, and how many straddled two splits and were dropped."""

    windows: dict[str, list[CropWindow]]
    dropped: int
    blocks: list[tuple[CropWindow, str]]


def region_split(height: int, width: int, window: int, stride: int, block: int,
                 fractions: Mapping[str, float], seed: int = 0) -> RegionSplit:
    """Share the windows of one scene out to splits by region (see the module docstring)."""
    if block < window:
        raise InputError(f"the region block size ({block} px) is smaller than the crop window "
                         f"({window} px); every crop would straddle two blocks. Use --block-size "
                         f">= {window}")
    rows, cols = block_edges(height, block, stride), block_edges(width, block, stride)
    cells = [CropWindow(r0, c0, r1 - r0, c1 - c0)
             for r0, r1 in zip(rows[:-1], rows[1:]) for c0, c1 in zip(cols[:-1], cols[1:])]
    counts = allocate_blocks(len(cells), fractions)
    order = np.random.default_rng(seed).permutation(len(cells))
    labels = [name for name, n in counts.items() for _ in range(n)]
    split_of = np.empty(len(cells), dtype=object)
    split_of[order] = labels
    grid = np.array(split_of, dtype=object).reshape(len(rows) - 1, len(cols) - 1)

    kept: dict[str, list[CropWindow]] = {name: [] for name in counts}
    dropped = 0
    for win in crop_windows(height, width, window, stride, grid=True):
        r0 = np.searchsorted(rows, win.row_off, side="right") - 1
        r1 = np.searchsorted(rows, win.row_end - 1, side="right") - 1
        c0 = np.searchsorted(cols, win.col_off, side="right") - 1
        c1 = np.searchsorted(cols, win.col_end - 1, side="right") - 1
        touched = set(grid[r0:r1 + 1, c0:c1 + 1].ravel())
        if len(touched) == 1:
            kept[touched.pop()].append(win)
        else:
            dropped += 1
    return RegionSplit(windows=kept, dropped=dropped,
                       blocks=[(cell, str(name)) for cell, name in zip(cells, split_of)])


def windows_leak(windows_by_split: Mapping[str, Sequence[CropWindow]]) -> list[tuple[str, str]]:
    """Pairs of splits that have intersecting windows (empty when the split is clean)."""
    names = list(windows_by_split)
    leaks = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if any(wa.intersects(wb) for wa in windows_by_split[a] for wb in windows_by_split[b]):
                leaks.append((a, b))
    return leaks
