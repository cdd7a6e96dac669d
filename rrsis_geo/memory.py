"""Will a tile size fit in memory? Answered before any tile is read, without torch.

The model's forward pass holds activations in proportion to the tile's pixels, times the batch.
The bytes per pixel depend on the backbone; measured here at 1024-2048 px tiles in float32
(peak RSS increase of one forward, batch 1): the EfficientNet-Lite0 default 260-345 B/px. Swin-B
models are estimated from their widths (4x the channels at every stride). A checkpoint may state
its own figure (``config.json``: ``memory_bytes_per_pixel``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Optional

from .errors import InputError

#: estimated forward-pass bytes per tile pixel, by vision backbone type (conservative)
BYTES_PER_PIXEL = {"efficientnet": 400, "swin": 3000}
#: for a backbone not listed
DEFAULT_BYTES_PER_PIXEL = 3000
#: share of the available memory a run may plan to use (the scene strips, the polygons, Python)
USABLE_SHARE = 0.7


class TileTooLargeError(InputError):
    """A tile size whose forward pass cannot fit in the device's memory."""

    option = "tile_size"


def bytes_per_pixel(config: Mapping[str, Any]) -> int:
    """The forward-pass memory per tile pixel of the model a checkpoint config describes."""
    stated = config.get("memory_bytes_per_pixel")
    if isinstance(stated, (int, float)) and stated > 0:
        return int(stated)
    vision = config.get("vision") or {}
    return BYTES_PER_PIXEL.get(str(vision.get("type")), DEFAULT_BYTES_PER_PIXEL)


def available_host_memory(meminfo: str = "/proc/meminfo") -> Optional[int]:
    """Bytes the kernel says can be allocated without swapping (None where it does not say)."""
    try:
        for line in Path(meminfo).read_text(encoding="ascii", errors="replace").splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def largest_tile(available: int, batch: int, per_pixel: int, multiple: int = 32) -> int:
    """The largest tile edge (a multiple of ``multiple``) whose batch fits in ``available`` bytes."""
    edge = math.isqrt(max(0, int(available * USABLE_SHARE) // max(1, batch * per_pixel)))
    return (edge // multiple) * multiple


def check_tile_memory(tile: int, batch: int, per_pixel: int, available: Optional[int], where: str) -> None:
    """Raise :class:`TileTooLargeError` when ``batch`` tiles of ``tile`` px cannot fit in
    ``available`` bytes (``where``: "this machine's memory", "the GPU's memory"); None: unknown."""
    if available is None:
        return
    needed = batch * tile * tile * per_pixel
    if needed <= available * USABLE_SHARE:
        return
    fits = largest_tile(available, batch, per_pixel)
    advice = f"the largest tile that fits is {fits} px" if fits >= 16 else "lower the batch size too"
    raise TileTooLargeError(
        f"tile size {tile} px needs about {needed / 2**30:.1f} GiB for a batch of {batch} (about {per_pixel} bytes "
        f"per pixel for this model) but {where} has {available / 2**30:.1f} GiB available; {advice}"
    )
