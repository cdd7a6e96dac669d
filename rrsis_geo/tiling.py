"""Tile grid, blend weights and the strip accumulator.

The grid covers the processed region with tiles of a fixed footprint that overlap; the last tile
of a row or column is shifted inward so that it ends on the region's edge (no tile reaches past
the data, except when the region itself is smaller than a tile: that tile is reflect-padded by
the reader and cropped back here).

Overlapping predictions are blended with a smooth separable window, the squared Hann window
``sin^4`` with a small floor: its weights never reach zero, so every pixel has a defined average,
and they fall off fast towards the tile border, where a model sees the least context (zero
padding, missing neighbours). With 25 % overlap a plain raised cosine (``sin^2``, or a 1 %
floor) still lets those border pixels shift probabilities by several percent; ``sin^4`` with a
1e-4 floor keeps the tiled result within 0.5 % of an untiled run (see the blending test).

:class:`StripAccumulator` holds ``sum(p * w)`` and ``sum(w)`` only for the rows that tiles still
in flight can touch: a ring buffer as tall as one tile footprint. Once a row of tiles is done the
rows above the next tile row are final and are flushed, so memory is bounded by width x tile
height whatever the scene height.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Iterator, Optional, Tuple

import numpy as np
import torch

from .grid import Tile, TileGrid, axis_starts, grid_rows_done, stride_for, tiles_for

#: weight of a tile's outermost pixels relative to its centre (never zero)
BLEND_FLOOR = 1e-4
#: exponent of the sine: 2 is the raised cosine (Hann), 4 its square
BLEND_POWER = 4


def blend_window_1d(n: int, floor: float = BLEND_FLOOR, power: int = BLEND_POWER) -> np.ndarray:
    """``floor + (1 - floor) * sin^power(pi * (i + 0.5) / n)``: smooth, symmetric, never zero."""
    i = np.arange(n, dtype=np.float64)
    return (floor + (1.0 - floor) * np.sin(np.pi * (i + 0.5) / n) ** power).astype(np.float32)


@lru_cache(maxsize=32)
def _blend_window_np(height: int, width: int) -> np.ndarray:
    return np.outer(blend_window_1d(height), blend_window_1d(width))


def blend_window(height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """2-D separable blend window ``[height, width]`` (float32) on ``device``."""
    return torch.from_numpy(_blend_window_np(height, width)).to(device)


class StripAccumulator:
    """Weighted average of overlapping tile predictions over a ring of rows.

    ``channels`` predictions (one per expression) share one weight sum. Rows are addressed in
    region coordinates; only rows in ``[top, top + capacity)`` may be touched, and rows are
    handed out, in order, by :meth:`flush`.
    """

    def __init__(self, width: int, capacity: int, channels: int, device: torch.device | str = "cpu") -> None:
        self.width = int(width)
        self.capacity = int(capacity)
        self.channels = int(channels)
        self.device = torch.device(device)
        self.sum_pw = torch.zeros((self.channels, self.capacity, self.width), dtype=torch.float32, device=self.device)
        self.sum_w = torch.zeros((self.capacity, self.width), dtype=torch.float32, device=self.device)
        self.valid = torch.zeros((self.capacity, self.width), dtype=torch.bool, device=self.device)
        self.top = 0  # first row not yet flushed
        self.max_rows_in_flight = 0  # highest (touched row + 1 - top) seen: the bound tests check

    @property
    def nbytes(self) -> int:
        """Bytes held by the ring buffers."""
        return sum(t.numel() * t.element_size() for t in (self.sum_pw, self.sum_w, self.valid))

    def _segments(self, row0: int, rows: int) -> Iterator[Tuple[int, int, int]]:
        """(ring start, ring stop, offset into the rows) covering region rows [row0, row0+rows)."""
        done = 0
        while done < rows:
            start = (row0 + done) % self.capacity
            n = min(rows - done, self.capacity - start)
            yield start, start + n, done
            done += n

    def _check(self, row0: int, rows: int) -> None:
        if row0 < self.top or row0 + rows > self.top + self.capacity:
            raise RuntimeError(
                f"rows [{row0}, {row0 + rows}) outside the accumulator's rows [{self.top}, {self.top + self.capacity})"
            )
        self.max_rows_in_flight = max(self.max_rows_in_flight, row0 + rows - self.top)

    def add(self, row0: int, col0: int, probs: torch.Tensor, weight: torch.Tensor, valid: Optional[torch.Tensor]) -> None:
        """Add ``probs[channels, h, w]`` with ``weight[h, w]`` at (row0, col0).

        ``valid[h, w]`` (bool) marks pixels that hold data; ``None`` means all of them do.
        """
        rows, cols = weight.shape
        self._check(row0, rows)
        c1 = col0 + cols
        for start, stop, off in self._segments(row0, rows):
            sl = slice(off, off + stop - start)
            self.sum_pw[:, start:stop, col0:c1].addcmul_(probs[:, sl], weight[sl])
            self.sum_w[start:stop, col0:c1].add_(weight[sl])
            if valid is None:
                self.valid[start:stop, col0:c1] = True
            else:
                self.valid[start:stop, col0:c1] |= valid[sl]

    def flush(self, upto: int) -> Tuple[int, torch.Tensor, torch.Tensor]:
        """Hand out the final rows ``[top, upto)``: ``(row0, probs[channels, n, W], valid[n, W])``.

        Probabilities are the weighted averages, 0 where there is no data.
        """
        row0 = self.top
        n = upto - row0
        if n < 0 or n > self.capacity:
            raise RuntimeError(f"cannot flush rows [{row0}, {upto}) from a ring of {self.capacity} rows")
        probs = torch.empty((self.channels, n, self.width), dtype=torch.float32, device=self.device)
        valid = torch.empty((n, self.width), dtype=torch.bool, device=self.device)
        for start, stop, off in self._segments(row0, n):
            sl = slice(off, off + stop - start)
            w = self.sum_w[start:stop]
            ok = self.valid[start:stop] & (w > 0)
            probs[:, sl] = torch.where(ok, self.sum_pw[:, start:stop] / w.clamp_min(1e-12), 0.0)
            valid[sl] = ok
            self.sum_pw[:, start:stop].zero_()
            self.sum_w[start:stop].zero_()
            self.valid[start:stop] = False
        self.top = upto
        return row0, probs, valid


def pad_reflect(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pad ``pixels[C, h, w]`` at the bottom/right to ``[C, height, width]`` by reflection."""
    _, h, w = pixels.shape
    if h == height and w == width:
        return pixels
    return np.pad(pixels, ((0, 0), (0, height - h), (0, width - w)), mode="reflect" if min(h, w) > 1 else "edge")


__all__ = [
    "BLEND_FLOOR",
    "StripAccumulator",
    "Tile",
    "TileGrid",
    "axis_starts",
    "blend_window",
    "blend_window_1d",
    "grid_rows_done",
    "pad_reflect",
    "stride_for",
    "tiles_for",
]
