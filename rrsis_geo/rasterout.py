"""Probability and mask GeoTIFFs written strip by strip.

Tiled (256 px), DEFLATE-compressed, BigTIFF when needed, same CRS and grid as the processed
region; one band per expression with the expression as band description. Strips are buffered to
whole 256-row block rows before writing, so that no compressed block is ever written twice.

* probability: float32 0..1, nodata -1 where the scene has no data;
* mask: uint8, 1 = target, 0 = background, nodata 255 where the scene has no data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .engine import StripSink
from .errors import OutputError

BLOCK = 256
PROB_NODATA = -1.0
MASK_NODATA = 255


class GeoTiffStripWriter(StripSink):
    """Writes strips of every expression into one multi-band GeoTIFF (see module docstring)."""

    def __init__(
        self,
        path: Path,
        *,
        width: int,
        height: int,
        transform,
        crs,
        descriptions: Sequence[str],
        kind: str = "probability",
        threshold: float = 0.5,
    ) -> None:
        if kind not in ("probability", "mask"):
            raise ValueError(kind)
        self.path = Path(path)
        self.width, self.height = int(width), int(height)
        self.transform, self.crs = transform, crs
        self.descriptions = list(descriptions)
        self.kind = kind
        self.threshold = float(threshold)
        self._ds = None
        self._pending: Optional[np.ndarray] = None  # rows not yet written, from self._row
        self._row = 0

    @property
    def dtype(self) -> str:
        return "float32" if self.kind == "probability" else "uint8"

    def _open(self):
        import rasterio

        profile = dict(
            driver="GTiff",
            width=self.width,
            height=self.height,
            count=len(self.descriptions),
            dtype=self.dtype,
            crs=self.crs,
            transform=self.transform,
            nodata=PROB_NODATA if self.kind == "probability" else MASK_NODATA,
            tiled=True,
            blockxsize=BLOCK,
            blockysize=BLOCK,
            compress="deflate",
            predictor=3 if self.kind == "probability" else 2,
            bigtiff="IF_SAFER",
            interleave="band",
        )
        try:
            ds = rasterio.open(self.path, "w", **profile)
        except Exception as exc:
            raise OutputError(f"cannot create {self.path} ({exc}); check the directory's permissions") from exc
        for i, text in enumerate(self.descriptions, start=1):
            ds.set_band_description(i, text)
        return ds

    def _encode(self, probs: np.ndarray, valid: np.ndarray) -> np.ndarray:
        if self.kind == "probability":
            out = probs.astype(np.float32, copy=True)
            out[:, ~valid] = PROB_NODATA
        else:
            out = (probs >= self.threshold).astype(np.uint8)
            out[:, ~valid] = MASK_NODATA
        return out

    def write(self, row0: int, probs: np.ndarray, valid: np.ndarray) -> None:
        from rasterio.windows import Window

        if self._ds is None:
            self._ds = self._open()
        data = self._encode(probs, valid)
        if self._pending is None:
            self._pending, self._row = data, row0
        else:
            if row0 != self._row + self._pending.shape[1]:
                raise RuntimeError(f"strip at row {row0} does not follow row {self._row + self._pending.shape[1]}")
            self._pending = np.concatenate([self._pending, data], axis=1)
        end = self._row + self._pending.shape[1]
        aligned = end if end == self.height else (end // BLOCK) * BLOCK
        if aligned > self._row:
            n = aligned - self._row
            self._ds.write(self._pending[:, :n], window=Window(0, self._row, self.width, n))
            self._pending = self._pending[:, n:] if n < self._pending.shape[1] else None
            self._row = aligned

    def close(self) -> None:
        from rasterio.windows import Window

        if self._ds is None:
            self._ds = self._open()
        if self._pending is not None and self._pending.shape[1]:
            self._ds.write(self._pending, window=Window(0, self._row, self.width, self._pending.shape[1]))
            self._row += self._pending.shape[1]
        self._pending = None
        self._ds.close()
        self._ds = None

    def abort(self) -> None:
        if self._ds is not None:
            self._ds.close()
            self._ds = None
        self._pending = None
