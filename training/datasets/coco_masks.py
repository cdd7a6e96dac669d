"""COCO-style object masks: run-length encodings and polygons, decoded without pycocotools.

Conventions (those of the COCO API):

* an RLE is ``{"size": [height, width], "counts": ...}`` over the mask in *column-major* order,
  alternating runs of 0 and 1 starting with 0; ``counts`` is a list of ints (uncompressed) or a
  string (compressed: each count in 5-bit groups, low group first, offset by 48 into printable
  ASCII, with a continuation bit 0x20 and a sign bit 0x10 in the last group; from the fourth
  count on, the count is stored as the difference to the count two places before);
* a polygon is ``[x1, y1, x2, y2, ...]`` in pixel coordinates where pixel ``(row, col)``
  covers ``[col, col + 1) x [row, row + 1)``; a pixel belongs to the polygon when its centre does.
  An object may have several polygons; its mask is their union.
"""

from __future__ import annotations

from typing import Any, List, Mapping, Sequence, Union

import numpy as np

from rrsis_geo.errors import InputError

Segmentation = Union[Sequence[Sequence[float]], Mapping[str, Any], Sequence[Mapping[str, Any]]]


def rle_counts_from_string(encoded: Union[str, bytes]) -> List[int]:
    """Decode the compressed COCO ``counts`` string into run lengths."""
    if isinstance(encoded, bytes):
        encoded = encoded.decode("ascii")
    counts: List[int] = []
    pos = 0
    while pos < len(encoded):
        value = 0
        shift = 0
        while True:
            if pos >= len(encoded):
                raise InputError("truncated RLE counts string in the annotations")
            chunk = ord(encoded[pos]) - 48
            pos += 1
            value |= (chunk & 0x1F) << shift
            shift += 5
            if not chunk & 0x20:
                if chunk & 0x10:  # negative: sign-extend
                    value |= -1 << shift
                break
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def decode_rle(rle: Mapping[str, Any]) -> np.ndarray:
    """A COCO RLE (compressed or not) as a bool mask ``[height, width]``."""
    try:
        height, width = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"malformed RLE segmentation (needs 'size' and 'counts'): {exc}") from exc
    if isinstance(counts, (str, bytes)):
        counts = rle_counts_from_string(counts)
    runs = np.asarray(counts, dtype=np.int64)
    if (runs < 0).any() or runs.sum() != height * width:
        raise InputError(
            f"RLE counts add up to {int(runs.sum())} pixels but the mask has {height}x{width}; the annotation is corrupt"
        )
    values = np.zeros(len(runs), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, runs)
    return flat.reshape((width, height)).T  # column-major storage


def rasterize_polygons(polygons: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """Union of COCO polygons as a bool mask ``[height, width]`` (pixel centres inside)."""
    from rasterio.features import rasterize
    from rasterio.transform import Affine
    from shapely.geometry import Polygon

    shapes = []
    for flat in polygons:
        coords = np.asarray(flat, dtype=np.float64)
        if coords.size < 6 or coords.size % 2:
            continue  # fewer than three points: no area
        shapes.append((Polygon(coords.reshape(-1, 2)), 1))
    if not shapes:
        return np.zeros((height, width), dtype=bool)
    burned = rasterize(shapes, out_shape=(height, width), transform=Affine.identity(), fill=0, dtype="uint8")
    return burned.astype(bool)


def decode_segmentation(segmentation: Segmentation, height: int, width: int) -> np.ndarray:
    """A COCO ``segmentation`` (polygon list, RLE, or list of RLEs) as a bool mask."""
    if isinstance(segmentation, Mapping):
        mask = decode_rle(segmentation)
    elif isinstance(segmentation, (list, tuple)) and segmentation and isinstance(segmentation[0], Mapping):
        mask = np.zeros((height, width), dtype=bool)
        for part in segmentation:
            mask |= decode_rle(part)
    elif isinstance(segmentation, (list, tuple)):
        mask = rasterize_polygons(segmentation, height, width)
    else:
        raise InputError(f"unknown segmentation type {type(segmentation).__name__} in the annotations")
    if mask.shape != (height, width):
        raise InputError(f"a segmentation decodes to {mask.shape} but its image is {height}x{width}")
    return mask
