"""Image and mask reading and the (deliberately few) transforms training uses.

Resize to the model's square input size and normalise; nothing else. In particular no
horizontal flips: referring expressions name directions ("the building left of the road"), and
a flipped image would contradict its own expression.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from rrsis_geo.errors import InputError

PathLike = Union[str, "os.PathLike[str]"]


def _open(path: PathLike):
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    try:
        with warnings.catch_warnings():
            # dataset images are often plain TIFF/JPEG without georeferencing
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(str(path))
    except RasterioIOError as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc


def read_rgb(path: PathLike) -> np.ndarray:
    """Read an image as float32 ``[3, H, W]`` in 0..1.

    One band is repeated to three; a fourth (alpha) band is dropped. ``uint8`` is divided by
    255, ``uint16`` by 65535, floating point is taken as already in 0..1.
    """
    with _open(path) as src:
        count = src.count
        if count < 1:
            raise InputError(f"{path} has no bands")
        bands = [1, 1, 1] if count < 3 else [1, 2, 3]
        data = src.read(bands)
    if data.dtype == np.uint8:
        return data.astype(np.float32) / 255.0
    if data.dtype == np.uint16:
        return data.astype(np.float32) / 65535.0
    if np.issubdtype(data.dtype, np.floating):
        return np.clip(data.astype(np.float32), 0.0, 1.0)
    raise InputError(f"{path} has pixel type {data.dtype}; dataset images must be uint8, uint16 or float")


def read_mask(path: PathLike, threshold: int = 50) -> np.ndarray:
    """Read a mask's first band as bool ``[H, W]``: foreground where the value is above ``threshold``.

    RefSegRS masks are 0/255 with some intermediate values on edges; the reference loader
    counts values above 50 as foreground.
    """
    with _open(path) as src:
        band = src.read(1)
    return band > threshold


def resize_image(image: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``[3, H, W]`` to ``[3, size, size]`` (bilinear, antialiased when shrinking)."""
    if image.shape[-2:] == (size, size):
        return image
    return F.interpolate(image[None], size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]


def resize_mask(mask: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a ``[H, W]`` 0/1 mask to ``[size, size]`` with nearest-neighbour sampling (as PIL's)."""
    if mask.shape[-2:] == (size, size):
        return mask
    resized = F.interpolate(mask[None, None].float(), size=(size, size), mode="nearest-exact")
    return resized[0, 0].to(mask.dtype)


def normalize(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(image - mean) / std`` per channel, for images scaled to 0..1."""
    m = torch.as_tensor(mean, dtype=image.dtype).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=image.dtype).view(-1, 1, 1)
    return (image - m) / s


def find_file(directory: Path, stem: str, suffixes: Sequence[str] = (".tif", ".tiff", ".png", ".jpg", ".jpeg")) -> Path:
    """``directory/stem.<suffix>`` for the first suffix that exists."""
    for suffix in suffixes:
        candidate = directory / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    raise InputError(f"no file {stem}{{{','.join(suffixes)}}} in {directory}; the dataset is incomplete")
