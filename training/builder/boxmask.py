"""Boxes to instance masks: the filled box, a shrunk box, an inscribed ellipse, and a refinement
inside the box from the colours around it.

The choice is measured against hand-drawn outlines (``scripts/measure_box_masks.py``,
``training/builder/README.md``). Every method returns a boolean mask of the box's pixel window
(``box_window``), so that masks of neighbouring boxes can be pasted into one image.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import ndimage

from training.builder.boxes import Box

METHODS = ("fill", "shrink", "ellipse", "refine", "oriented")
# length / width of the vehicle classes seen from above (cars 4.5 × 1.8 m, buses 12 × 2.55 m)
ASPECT = {"car": 2.4, "minibus": 2.5, "truck": 3.5, "bus": 4.5}


def box_window(box: Box, height: int, width: int) -> tuple[int, int, int, int]:
    """Pixel rows/columns ``(r0, r1, c0, c1)`` whose centres lie inside the box."""
    c0 = max(0, math.ceil(box.x0 - 0.5))
    c1 = min(width, math.ceil(box.x1 - 0.5))
    r0 = max(0, math.ceil(box.y0 - 0.5))
    r1 = min(height, math.ceil(box.y1 - 0.5))
    return r0, max(r0, r1), c0, max(c0, c1)


def _centres(box: Box, window: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    r0, r1, c0, c1 = window
    ys = (np.arange(r0, r1) + 0.5)[:, None]
    xs = (np.arange(c0, c1) + 0.5)[None, :]
    return ys, xs


def fill_mask(box: Box, window, image=None) -> np.ndarray:
    """Every pixel of the box."""
    r0, r1, c0, c1 = window
    return np.ones((r1 - r0, c1 - c0), dtype=bool)


def shrink_mask(box: Box, window, image=None, factor: float = 0.85) -> np.ndarray:
    """The box shrunk about its centre to ``factor`` of its width and height."""
    ys, xs = _centres(box, window)
    cx, cy = box.center
    return (np.abs(xs - cx) <= box.width * factor / 2) & (np.abs(ys - cy) <= box.height * factor / 2)


def ellipse_mask(box: Box, window, image=None) -> np.ndarray:
    """The ellipse inscribed in the box (a rounded shape that drops the corners a diagonal
    vehicle never fills)."""
    ys, xs = _centres(box, window)
    cx, cy = box.center
    return ((xs - cx) / (box.width / 2)) ** 2 + ((ys - cy) / (box.height / 2)) ** 2 <= 1.0


def refine_mask(box: Box, window, image: np.ndarray | None = None, ring: int = 3,
                low: float = 0.3, high: float = 0.98) -> np.ndarray:
    """Pixels inside the box whose colour differs from every colour of a ring just outside it
    (Otsu threshold on the distance), cleaned (closing, holes filled, the component nearest the
    centre), and kept inside the inscribed ellipse's bounding box; falls back to the ellipse
    when the result covers under ``low`` or over ``high`` of the box (a vehicle the colour of
    the road, or a box crowded by neighbours)."""
    fallback = ellipse_mask(box, window)
    distance = _ring_distance(box, window, image, ring) if image is not None else None
    if distance is None:
        return fallback
    fg = distance > _otsu(distance.ravel())
    fg = ndimage.binary_closing(fg, iterations=2, border_value=0) | fg
    fg = ndimage.binary_fill_holes(fg)
    labels, count = ndimage.label(fg)
    if count > 1:
        areas = np.bincount(labels.ravel())[1:]
        fg = labels == (1 + int(np.argmax(areas)))
    share = fg.mean() if fg.size else 0.0
    if not low <= share <= high:
        return fallback
    return fg


def _ring_distance(box: Box, window, image: np.ndarray, ring: int = 3) -> np.ndarray | None:
    """Per box pixel: colour distance to the nearest of (a sample of) the pixels in a ring just
    outside the box; ``None`` when the ring is too thin (box at the image edge all round)."""
    r0, r1, c0, c1 = window
    height, width = image.shape[:2]
    R0, R1, C0, C1 = max(0, r0 - ring), min(height, r1 + ring), max(0, c0 - ring), min(width, c1 + ring)
    outer = image[R0:R1, C0:C1].astype(np.float32)
    inside = np.zeros(outer.shape[:2], dtype=bool)
    inside[r0 - R0:r1 - R0, c0 - C0:c1 - C0] = True
    ring_px = outer[~inside]
    if len(ring_px) < 8 or not inside.any():
        return None
    samples = ring_px[::max(1, len(ring_px) // 256)]
    box_px = outer[inside]
    distance = np.full(len(box_px), np.inf, dtype=np.float32)
    for start in range(0, len(samples), 64):
        chunk = samples[start:start + 64]
        distance = np.minimum(distance, np.sqrt(((box_px[:, None, :] - chunk[None]) ** 2).sum(-1)).min(1))
    return distance.reshape(r1 - r0, c1 - c0)


def oriented_rectangle(box: Box, angle: float, aspect: float, window) -> np.ndarray:
    """The rectangle of length/width ``aspect`` at ``angle`` (radians from the x axis, image y
    down) whose axis-aligned bounding box is ``box``."""
    c, s = abs(math.cos(angle)), abs(math.sin(angle))
    width = min(box.width / (aspect * c + s), box.height / (aspect * s + c))
    length = aspect * width
    ys, xs = _centres(box, window)
    cx, cy = box.center
    u = (xs - cx) * math.cos(angle) + (ys - cy) * math.sin(angle)
    v = -(xs - cx) * math.sin(angle) + (ys - cy) * math.cos(angle)
    return (np.abs(u) <= length / 2) & (np.abs(v) <= width / 2)


def _tilt(ratio: float, aspect: float) -> float:
    """Angle θ in [0, π/4·2] at which a rectangle of length/width ``aspect`` has a bounding box
    of width/height ``ratio`` (long side along x at θ = 0)."""
    grid = np.linspace(0.0, math.pi / 2, 181)
    r = (aspect * np.cos(grid) + np.sin(grid)) / (aspect * np.sin(grid) + np.cos(grid))
    return float(grid[int(np.argmin(np.abs(np.log(r) - math.log(ratio))))])


def oriented_mask(box: Box, window, image: np.ndarray | None = None) -> np.ndarray:
    """A rectangle of the class's length/width ratio fitted into the box. The box's shape gives
    the tilt of a vehicle lying along either diagonal; a third candidate lies along the box's
    long side (a loosely drawn box around an axis-aligned vehicle). The image picks among them:
    the candidate whose pixels differ most from the ring of colours around the box, against the
    rest of the box. Boxes as elongated as the class are the box itself."""
    aspect = ASPECT.get(box.cls, 2.4)
    theta = _tilt(box.width / box.height, aspect)
    if theta < math.radians(8) or theta > math.radians(82):
        return fill_mask(box, window)
    along = 0.0 if box.width >= box.height else math.pi / 2
    candidates = [oriented_rectangle(box, angle, aspect, window) for angle in (theta, -theta, along)]
    distance = _ring_distance(box, window, image) if image is not None else None
    if distance is None:
        return ellipse_mask(box, window)
    scores = [distance[c].mean() - distance[~c].mean() if c.any() and (~c).any() else -np.inf
              for c in candidates]
    return candidates[int(np.argmax(scores))]


def _otsu(values: np.ndarray, bins: int = 64) -> float:
    lo, hi = float(values.min()), float(values.max())
    if hi - lo < 1e-6:
        return hi
    hist, edges = np.histogram(values, bins=bins, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(hist)
    mean = np.cumsum(hist * centres)
    total, total_mean = weight[-1], mean[-1]
    w1 = total - weight
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (total_mean * weight / total - mean) ** 2 / (weight * w1 / total)
    between = np.nan_to_num(between[:-1], nan=0.0, posinf=0.0)
    return float(centres[int(np.argmax(between))])


MASKERS: dict[str, Callable[..., np.ndarray]] = {
    "fill": fill_mask, "shrink": shrink_mask, "ellipse": ellipse_mask, "refine": refine_mask,
    "oriented": oriented_mask,
}


def instance_masks(boxes: list[Box], image: np.ndarray, method: str) -> np.ndarray:
    """Instance label image (0 background, ``i + 1`` box ``i``) of ``boxes`` on ``image``
    (``H × W × 3``); where masks overlap the smaller box wins (it lies on top in a nadir view
    more often than not, and keeps small vehicles next to buses visible)."""
    if method not in MASKERS:
        raise ValueError(f"unknown box mask method {method!r}; choose one of {', '.join(METHODS)}")
    height, width = image.shape[:2]
    labels = np.zeros((height, width), dtype=np.int32)
    order = sorted(range(len(boxes)), key=lambda i: -boxes[i].width * boxes[i].height)
    for i in order:  # largest first, so that smaller ones are painted over them
        window = box_window(boxes[i], height, width)
        r0, r1, c0, c1 = window
        if r1 <= r0 or c1 <= c0:
            continue
        mask = MASKERS[method](boxes[i], window, image)
        labels[r0:r1, c0:c1][mask] = i + 1
    return labels
