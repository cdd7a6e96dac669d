"""Probability and mask GeoTIFFs written strip by strip.

Tiled (256 px), DEFLATE-compressed, BigTIFF when needed, same CRS and grid as the processed
region; one band per expression with the expression as band description. Strips are buffered to
whole 256-row block rows before writing, so that no compressed block is ever written twice.

* probability: float32 0..1, nodata -1 where the scene has no data;
* mask: uint8, 1 = target, 0 = background, nodata 255 where the scene has no data.

A write that fails (no space left, read-only file system, removed directory) raises
:class:`OutputError` naming the file and the cause (see :func:`rrsis_geo.io_utils.write_failure`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .sinks import StripSink
from .errors import OutputError
from .io_utils import write_failure

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
            raise write_failure(self.path, exc) from exc
        for i, text in enumerate(self.descriptions, start=1):
            ds.set_band_description(i, text)
        return ds

    def _write(self, data: np.ndarray, row0: int) -> None:
        from rasterio.windows import Window

        try:
            self._ds.write(data, window=Window(0, row0, self.width, data.shape[1]))
        except OutputError:
            raise
        except Exception as exc:  # GDAL: 'Write failed', the cause is in the file system
            raise write_failure(self.path, exc) from exc

    def _encode(self, probs: np.ndarray, valid: np.ndarray) -> np.ndarray:
        if self.kind == "probability":
            out = probs.astype(np.float32, copy=True)
            out[:, ~valid] = PROB_NODATA
        else:
            out = (probs >= self.threshold).astype(np.uint8)
            out[:, ~valid] = MASK_NODATA
        return out

    def write(self, row0: int, probs: np.ndarray, valid: np.ndarray) -> None:
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
            self._write(self._pending[:, :n], self._row)
            self._pending = self._pending[:, n:] if n < self._pending.shape[1] else None
            self._row = aligned

    def close(self) -> None:
        if self._ds is None:
            self._ds = self._open()
        if self._pending is not None and self._pending.shape[1]:
            self._write(self._pending, self._row)
            self._row += self._pending.shape[1]
        self._pending = None
        ds, self._ds = self._ds, None
        try:  # GDAL flushes the last blocks and the directory here
            ds.close()
            # ...and reports a failure there only to its log (rasterio 1.4 does not raise it)
            check_complete(self.path, len(self.descriptions))
        except Exception as exc:
            raise write_failure(self.path, exc) from exc

    def abort(self) -> None:
        ds, self._ds = self._ds, None
        self._pending = None
        if ds is not None:
            try:
                ds.close()
            except Exception:  # the file is deleted anyway; the first error is the one reported
                pass


class IncompleteFile(OSError):
    """A GeoTIFF whose directory or blocks did not all reach the disk."""


def check_complete(path: Path, bands: int) -> None:
    """Raise :class:`IncompleteFile` unless the tiled GeoTIFF at ``path`` opens and every block
    of every band lies inside the file (GDAL's ``TIFF`` metadata gives their byte ranges)."""
    import rasterio

    size = Path(path).stat().st_size
    try:
        with rasterio.open(path) as ds:
            rows, cols = -(-ds.height // BLOCK), -(-ds.width // BLOCK)
            for band in range(1, bands + 1):
                for r in range(rows):
                    for c in range(cols):
                        offset = ds.get_tag_item(f"BLOCK_OFFSET_{c}_{r}", "TIFF", bidx=band)
                        length = ds.get_tag_item(f"BLOCK_SIZE_{c}_{r}", "TIFF", bidx=band)
                        if not offset or not length or int(offset) + int(length) > size:
                            raise IncompleteFile(f"block {c},{r} of band {band} was not written")
    except rasterio.errors.RasterioIOError as exc:
        raise IncompleteFile(f"the file cannot be read back ({exc})") from exc


def geotiff_bytes(width: int, height: int, bands: int, kind: str = "probability") -> int:
    """A conservative size of a probability or mask GeoTIFF: its uncompressed pixels plus 1 %
    and 1 MiB for the directory (DEFLATE never grows incompressible data by more)."""
    itemsize = 4 if kind == "probability" else 1
    raw = int(width) * int(height) * int(bands) * itemsize
    return raw + raw // 100 + (1 << 20)
