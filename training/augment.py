"""Augmentation for aerial imagery from elsewhere, that never contradicts the expression.

Aerial scenes have no up: the eight flips and quarter turns (the dihedral group) are all valid
views, and so are other sensors' colours, haze, blur and noise, and a scale a little off the one
a category was learned at. What an expression says limits what may change:

* *where* words ("left", "at the top", "in the centre") forbid flips, turns and zooms (the
  dihedral group keeps the centre where it is, so "centre" allows flips and turns, not zooms);
* *colour* words ("red car", "green areas") forbid hue and saturation changes (brightness,
  contrast, gamma, blur and noise stay: a red car in haze is still red).

Everything is drawn from a ``torch.Generator`` so that a seeded epoch draws the same views.
Images are float ``[3, S, S]`` in 0..1 (before normalisation); masks are a stack ``[M, S, S]`` of
0/1 maps (the target and the dense per-category targets) that moves with the image.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from typing import Any, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F

from rrsis_geo.errors import InputError

#: words that place the referent in the frame; flips, turns and zooms would move it
DIRECTION_WORDS = frozenset({"left", "right", "top", "bottom", "upper", "lower", "leftmost", "rightmost",
                             "north", "south", "east", "west", "northern", "southern", "eastern", "western"})
#: words of the centre: flips and turns keep it there, a zoom does not
CENTRE_WORDS = frozenset({"centre", "center", "central", "middle"})
#: colour words: hue and saturation must stay
COLOUR_WORDS = frozenset({"white", "black", "dark", "grey", "gray", "silver", "red", "blue", "green",
                          "yellow", "orange", "brown", "colour", "color", "coloured", "colored"})


@dataclass(frozen=True)
class Invariance:
    """What an expression allows to change."""

    dihedral: bool
    zoom: bool
    colour: bool


def invariance(expression: str) -> Invariance:
    """What may change in the image of ``expression`` (see module docstring)."""
    words = set(re.findall(r"[a-z]+", expression.lower()))
    placed = bool(words & DIRECTION_WORDS)
    return Invariance(dihedral=not placed, zoom=not placed and not (words & CENTRE_WORDS), colour=not (words & COLOUR_WORDS))


@dataclass(frozen=True)
class Augmentation:
    """The augmentation a training config's ``data.augment`` section describes (all off by default).

    ``scale``: zoom range (log-uniform); above 1 a window is cropped and enlarged, below 1 the crop
    is shrunk and reflected out to the input size. ``brightness``/``contrast``/``saturation``: the
    largest relative change (factor in ``1 ± x``); ``hue``: the largest rotation, in turns;
    ``gamma``: the largest change of the exponent; ``blur``: the probability of a Gaussian blur of
    up to ``blur_sigma`` px; ``noise``: the largest standard deviation of added Gaussian noise.
    """

    dihedral: bool = False
    scale: Tuple[float, float] = (1.0, 1.0)
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    gamma: float = 0.0
    blur: float = 0.0
    blur_sigma: float = 1.0
    noise: float = 0.0

    @classmethod
    def from_config(cls, section: Optional[Mapping[str, Any]]) -> Optional["Augmentation"]:
        """From ``data.augment`` (None or empty: no augmentation)."""
        if not section:
            return None
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise InputError(f"unknown setting data.augment.{unknown[0]}; known here: {', '.join(sorted(known))}")
        values = dict(section)
        if "scale" in values:
            low, high = (float(v) for v in values["scale"])
            if not 0.25 <= low <= 1.0 <= high <= 4.0:
                raise InputError(f"data.augment.scale must be [low, high] with 0.25 <= low <= 1 <= high <= 4, got {values['scale']}")
            values["scale"] = (low, high)
        for name in ("brightness", "contrast", "saturation", "gamma"):
            if name in values and not 0.0 <= float(values[name]) < 1.0:
                raise InputError(f"data.augment.{name} must be in [0, 1), got {values[name]}")
        if "hue" in values and not 0.0 <= float(values["hue"]) <= 0.5:
            raise InputError(f"data.augment.hue must be in [0, 0.5] turns, got {values['hue']}")
        if "blur" in values and not 0.0 <= float(values["blur"]) <= 1.0:
            raise InputError(f"data.augment.blur is a probability, got {values['blur']}")
        return cls(**values)

    @property
    def zooms(self) -> bool:
        return self.scale != (1.0, 1.0)

    def __call__(
        self, image: torch.Tensor, masks: torch.Tensor, allowed: Invariance, generator: torch.Generator
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """An augmented view of ``image`` and its ``[M, S, S]`` ``masks`` (inputs untouched)."""
        if self.zooms and allowed.zoom:
            image, masks = _zoom(image, masks, _log_uniform(self.scale, generator), generator)
        if self.dihedral and allowed.dihedral:
            k, flip = int(_randint(4, generator)), bool(_randint(2, generator))
            image, masks = _dihedral(image, k, flip), _dihedral(masks, k, flip)
        image = self._photometric(image, allowed, generator)
        return image.clamp(0.0, 1.0), masks

    def _photometric(self, image: torch.Tensor, allowed: Invariance, generator: torch.Generator) -> torch.Tensor:
        if self.brightness:
            image = image * _uniform(1 - self.brightness, 1 + self.brightness, generator)
        if self.contrast:
            mean = image.mean()
            image = (image - mean) * _uniform(1 - self.contrast, 1 + self.contrast, generator) + mean
        if allowed.colour and self.saturation:
            grey = luminance(image)
            image = (image - grey) * _uniform(1 - self.saturation, 1 + self.saturation, generator) + grey
        if allowed.colour and self.hue:
            image = rotate_hue(image, _uniform(-self.hue, self.hue, generator))
        if self.gamma:
            image = image.clamp(0.0, 1.0) ** _uniform(1 - self.gamma, 1 + self.gamma, generator)
        if self.blur and _uniform(0.0, 1.0, generator) < self.blur:
            image = gaussian_blur(image, _uniform(0.3, self.blur_sigma, generator))
        if self.noise:
            sigma = _uniform(0.0, self.noise, generator)
            image = image + torch.randn(image.shape, generator=generator) * sigma
        return image


# -------------------------------------------------------------------------------------- pieces


def _uniform(low: float, high: float, generator: torch.Generator) -> float:
    return float(low + (high - low) * torch.rand((), generator=generator))


def _randint(high: int, generator: torch.Generator) -> int:
    return int(torch.randint(high, (), generator=generator))


def _log_uniform(bounds: Tuple[float, float], generator: torch.Generator) -> float:
    low, high = bounds
    return math.exp(_uniform(math.log(low), math.log(high), generator))


def _dihedral(x: torch.Tensor, quarter_turns: int, flip: bool) -> torch.Tensor:
    """One of the eight symmetries of the square, on the last two dimensions."""
    if flip:
        x = x.flip(-1)
    return torch.rot90(x, quarter_turns, dims=(-2, -1)) if quarter_turns else x


def _zoom(image: torch.Tensor, masks: torch.Tensor, factor: float, generator: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
    """Zoom by ``factor`` about a random point, keeping the size (masks by nearest neighbour)."""
    size = image.shape[-1]
    if factor >= 1.0:
        side = max(8, int(round(size / factor)))
        top, left = _randint(size - side + 1, generator), _randint(size - side + 1, generator)
        rows, cols = slice(top, top + side), slice(left, left + side)
        image = F.interpolate(image[:, rows, cols][None], size=(size, size), mode="bilinear", align_corners=False)[0]
        return image, _resize_masks(masks[:, rows, cols], size)
    side = max(8, int(round(size * factor)))
    small = F.interpolate(image[None], size=(side, side), mode="bilinear", align_corners=False, antialias=True)
    pad_total = size - side
    top, left = _randint(pad_total + 1, generator), _randint(pad_total + 1, generator)
    padding = (left, pad_total - left, top, pad_total - top)
    image = _reflect(small, padding)[0]
    masks = _reflect(_resize_masks(masks, side)[None].float(), padding)[0].to(masks.dtype)
    return image, masks


def _reflect(x: torch.Tensor, padding: Tuple[int, int, int, int]) -> torch.Tensor:
    """Reflect-pad, repeatedly where a pad is wider than the picture (reflect allows < size)."""
    left, right, top, bottom = padding
    while left or right or top or bottom:
        height, width = x.shape[-2:]
        step = (min(left, width - 1), min(right, width - 1), min(top, height - 1), min(bottom, height - 1))
        x = F.pad(x, step, mode="reflect")
        left, right, top, bottom = left - step[0], right - step[1], top - step[2], bottom - step[3]
    return x


def _resize_masks(masks: torch.Tensor, size: int) -> torch.Tensor:
    resized = F.interpolate(masks[None].float(), size=(size, size), mode="nearest-exact")
    return resized[0].to(masks.dtype)


def luminance(image: torch.Tensor) -> torch.Tensor:
    """Rec. 601 luma ``[1, H, W]`` of an RGB ``[3, H, W]`` image."""
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=image.dtype).view(3, 1, 1)
    return (image * weights).sum(0, keepdim=True)


def rotate_hue(image: torch.Tensor, turns: float) -> torch.Tensor:
    """Rotate the hue of ``[3, H, W]`` RGB by ``turns`` (a rotation about the grey axis)."""
    angle = 2 * math.pi * turns
    cos, sin = math.cos(angle), math.sin(angle)
    third, root = 1.0 / 3.0, math.sqrt(1.0 / 3.0)
    a = cos + (1 - cos) * third
    b = third * (1 - cos) - root * sin
    c = third * (1 - cos) + root * sin
    matrix = torch.tensor([[a, b, c], [c, a, b], [b, c, a]], dtype=image.dtype)
    return torch.einsum("ij,jhw->ihw", matrix, image)


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``[C, H, W]`` (reflected edges)."""
    radius = max(1, int(math.ceil(2.5 * sigma)))
    offsets = torch.arange(-radius, radius + 1, dtype=image.dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = image.shape[0]
    x = F.pad(image[None], (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    x = F.conv2d(x, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
    return x[0]
