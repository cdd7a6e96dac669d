"""Vehicles from box labels: per-instance facts decided from pixels and geometry, and the
referents (category, attributes, relation → mask) of one crop.

Facts are decided on the whole image, where the labels are; each is ``True``, ``False`` or
``None`` (cannot be decided from the labels). A referent is emitted only when every instance of
its category in the crop is decided for it, so that its mask is exactly what it says.

* colour: on the image stretched to its 1–99 % range, the share of mask pixels (eroded, so that the road around a car does not count) in
  each colour class; a vehicle is of a colour when that class holds at least half of them and
  twice the next one, not of it when the class holds under a fifth, undecided in between;
* position: the visible centroid in the left/right third, top/bottom third, or the centre cell;
  undecided within 5 % of the crop's side from those thirds' edges;
* size: box length (its long side, close to the vehicle's length at any heading) against the
  median length of the category's instances in the source: large ≥ 1.25×, small ≤ 0.8×, and
  undecided in the margins just inside those bounds;
* in a row: three or more boxes linked by gaps ≤ ``row_gap_m`` side by side along one axis;
* alone: no other box within ``alone_m``; undecided when that distance reaches past the image;
* next to (a relation): a box of the object category within ``next_to_m``; undecided when the
  object box is not (mostly) inside the crop or the distance reaches past the image.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from training.builder.boxes import Box
from training.builder.paraphrase import Referent

COLOURS = ("white", "black", "grey", "red", "blue", "green", "yellow")
POSITIONS = ("left", "right", "top", "bottom", "centre")
NOT_COLOUR = 0.2  # a vehicle with fewer of its pixels in a colour class is not of that colour
POSITION_MARGIN = 0.05  # of the crop's side: centroids this close to a third's edge are undecided


@dataclass(frozen=True)
class VehicleRules:
    """Thresholds of the facts (metres)."""

    row_gap_m: float = 1.5
    alone_m: float = 8.0
    next_to_m: float = 2.0
    large: float = 1.25
    small: float = 0.8
    margin: float = 0.08


def colour_classes(rgb: np.ndarray) -> np.ndarray:
    """Index into :data:`COLOURS` of each ``N × 3`` uint8 pixel (-1: no class, e.g. orange)."""
    x = rgb.astype(np.float32) / 255.0
    v = x.max(1)
    c = v - x.min(1)
    s = np.where(v > 0, c / np.maximum(v, 1e-6), 0)
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    safe = np.maximum(c, 1e-6)
    h = np.where(v == r, ((g - b) / safe) % 6, np.where(v == g, (b - r) / safe + 2, (r - g) / safe + 4)) * 60
    out = np.full(len(x), -1, dtype=np.int8)
    # a dark red car is red, not black; other dark "hues" are the sky's cast in shadow (blue)
    red = (h < 20) | (h >= 300)  # crimson included: red paint often looks purplish from above
    hue = (s >= 0.35) & (v >= 0.22) | (s >= 0.5) & (v >= 0.12) & red
    out[~hue & (v < 0.22)] = 1
    out[~hue & (v >= 0.22) & (v >= 0.72)] = 0
    out[~hue & (v >= 0.22) & (v < 0.72)] = 2
    out[hue & red] = 3
    out[hue & (h >= 190) & (h < 260)] = 4
    out[hue & (h >= 75) & (h < 165)] = 5
    out[hue & (h >= 45) & (h < 70)] = 6
    return out


def stretch(image: np.ndarray) -> np.ndarray:
    """The image stretched per band from its 1st to its 99th percentile: aerial haze lifts dark
    cars to the grey of the road, and colour names are relative to the scene's own range."""
    sample = image[::4, ::4].reshape(-1, 3).astype(np.float32)
    lo, hi = np.percentile(sample, 1, axis=0), np.percentile(sample, 99, axis=0)
    out = (image.astype(np.float32) - lo) / np.maximum(hi - lo, 1.0) * 255
    return np.clip(out, 0, 255).astype(np.uint8)


def colour_shares(pixels: np.ndarray) -> np.ndarray | None:
    """Share of the pixels in each class of :data:`COLOURS` (``None``: too few pixels)."""
    if len(pixels) < 12:
        return None
    return np.bincount(colour_classes(pixels) + 1, minlength=len(COLOURS) + 1)[1:] / len(pixels)


def instance_colour(pixels: np.ndarray) -> str | None:
    """The colour of a vehicle from its pixels, or ``None`` when no class dominates."""
    shares = colour_shares(pixels)
    return None if shares is None else dominant_colour(shares)


def dominant_colour(shares: np.ndarray) -> str | None:
    order = np.argsort(shares)[::-1]
    top, second = shares[order[0]], shares[order[1]]
    return COLOURS[int(order[0])] if top >= 0.5 and top >= 2 * second else None


def is_colour(shares: np.ndarray | None, colour: str) -> bool | None:
    """Is the vehicle this colour: yes when it dominates, no when under :data:`NOT_COLOUR` of
    the pixels are of it (clearly another colour), else undecided."""
    if shares is None:
        return None
    if dominant_colour(shares) == colour:
        return True
    return False if shares[COLOURS.index(colour)] < NOT_COLOUR else None


def _gap(a: Box, b: Box) -> float:
    dx = max(0.0, max(a.x0, b.x0) - min(a.x1, b.x1))
    dy = max(0.0, max(a.y0, b.y0) - min(a.y1, b.y1))
    return math.hypot(dx, dy)


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


@dataclass(frozen=True)
class ImageFacts:
    """Facts of every box of one image (lists parallel to ``boxes``)."""

    boxes: Sequence[Box]
    colour: list[str | None]
    shares: list[np.ndarray | None]
    length_m: list[float]
    in_row: list[bool | None]
    alone: list[bool | None]


def image_facts(boxes: Sequence[Box], labels: np.ndarray, image: np.ndarray, gsd_m: float,
                rules: VehicleRules) -> ImageFacts:
    """Colour, length, row and alone of each box (``labels``: the instance label image)."""
    height, width = labels.shape
    shares = []
    image = stretch(image)
    objects = ndimage.find_objects(labels, max_label=len(boxes))
    for i, sl in enumerate(objects):
        if sl is None:
            shares.append(None)
            continue
        core = ndimage.binary_erosion(labels[sl] == i + 1, iterations=2)
        shares.append(colour_shares(image[sl][core]))
    colours = [None if sh is None else dominant_colour(sh) for sh in shares]
    lengths = [max(b.width, b.height) * gsd_m for b in boxes]
    row_px, alone_px = rules.row_gap_m / gsd_m, rules.alone_m / gsd_m
    links = [set() for _ in boxes]
    for i, a in enumerate(boxes):
        for j in range(i + 1, len(boxes)):
            b = boxes[j]
            side_x = _overlap(a.y0, a.y1, b.y0, b.y1) >= 0.5 * min(a.height, b.height)
            side_y = _overlap(a.x0, a.x1, b.x0, b.x1) >= 0.5 * min(a.width, b.width)
            if (side_x or side_y) and _gap(a, b) <= row_px:
                links[i].add(j)
                links[j].add(i)
    component = _components(links)
    sizes = np.bincount(component) if len(component) else np.zeros(0, int)
    in_row: list[bool | None] = []
    alone: list[bool | None] = []
    for i, b in enumerate(boxes):
        edge = min(b.x0, b.y0, width - b.x1, height - b.y1)
        if sizes[component[i]] >= 3:
            in_row.append(True)
        else:  # a row could continue past the image edge
            in_row.append(False if edge > row_px + max(b.width, b.height) else None)
        near = any(_gap(b, o) <= alone_px for j, o in enumerate(boxes) if j != i)
        alone.append(False if near else (True if edge > alone_px else None))
    return ImageFacts(boxes=boxes, colour=colours, shares=shares, length_m=lengths, in_row=in_row,
                      alone=alone)


def _components(links: list[set[int]]) -> np.ndarray:
    component = np.full(len(links), -1, dtype=int)
    label = 0
    for start in range(len(links)):
        if component[start] >= 0:
            continue
        stack = [start]
        component[start] = label
        while stack:
            k = stack.pop()
            for n in links[k]:
                if component[n] < 0:
                    component[n] = label
                    stack.append(n)
        label += 1
    return component


@dataclass(frozen=True)
class CropReferent:
    """A referent decided on a crop, with its mask at the crop's source resolution."""

    referent: Referent
    mask: np.ndarray


def crop_referents(facts: ImageFacts, labels: np.ndarray, window: tuple[int, int, int, int],
                   categories: Mapping[str, frozenset[str]], medians: Mapping[str, float],
                   relations: Sequence[tuple[str, str, str]], gsd_m: float,
                   rules: VehicleRules, min_visible: float = 0.5) -> list[CropReferent]:
    """Every decidable referent of the crop ``window`` = ``(r0, r1, c0, c1)``.

    ``relations``: ``(phrase, subject category, object category)``, e.g. ``("next to the bus",
    "car", "bus")``. ``medians``: median length (m) of each category's instances in the source.
    """
    r0, r1, c0, c1 = window
    crop = labels[r0:r1, c0:c1]
    ids = np.unique(crop)
    ids = ids[ids > 0] - 1
    if not len(ids):
        return []
    full_area = np.bincount(labels.ravel(), minlength=len(facts.boxes) + 1)
    crop_area = np.bincount(crop.ravel(), minlength=len(facts.boxes) + 1)
    visible = {int(i): crop_area[i + 1] / max(1, full_area[i + 1]) for i in ids}
    h, w = crop.shape
    centroids = dict(zip(ids.tolist(), ndimage.center_of_mass(np.ones_like(crop), crop, ids + 1)))
    out: list[CropReferent] = []

    def mask_of(members) -> np.ndarray:
        table = np.zeros(len(facts.boxes) + 1, dtype=bool)
        table[[m + 1 for m in members]] = True
        return table[crop]

    def position(i: int, word: str) -> bool | None:
        """Is the visible centroid in that part of the crop; ``None`` within ``margin`` of a
        boundary between parts (two cars side by side are not "left" and "centre")."""
        y, x = centroids[i]
        fx, fy = x / w, y / h
        m = POSITION_MARGIN

        def below(v: float, edge: float) -> bool | None:
            return True if v < edge - m else (False if v > edge + m else None)

        def above(v: float, edge: float) -> bool | None:
            flipped = below(v, edge)
            return None if flipped is None else not flipped

        if word == "centre":
            tests = [above(fx, 1 / 3), below(fx, 2 / 3), above(fy, 1 / 3), below(fy, 2 / 3)]
            if any(t is False for t in tests):
                return False
            return None if any(t is None for t in tests) else True
        axis, edge, side = {"left": (fx, 1 / 3, below), "right": (fx, 2 / 3, above),
                            "top": (fy, 1 / 3, below), "bottom": (fy, 2 / 3, above)}[word]
        return side(axis, edge)

    for category, classes in categories.items():
        members = [int(i) for i in ids if facts.boxes[i].cls in classes]
        if not members:
            continue
        count = len(members)
        out.append(CropReferent(Referent(category, count=count), mask_of(members)))
        median = medians.get(category)
        tests: dict[str, list[bool | None]] = {
            c: [is_colour(facts.shares[i], c) for i in members] for c in COLOURS}
        for p in POSITIONS:
            tests[p] = [position(i, p) for i in members]
        if median:
            ratio = [facts.length_m[i] / median for i in members]
            tests["large"] = [True if r >= rules.large else (False if r < rules.large - rules.margin else None)
                              for r in ratio]
            tests["small"] = [True if r <= rules.small else (False if r > rules.small + rules.margin else None)
                              for r in ratio]
        tests["in a row"] = [facts.in_row[i] for i in members]
        tests["alone"] = [facts.alone[i] for i in members]
        kept: dict[str, list[int]] = {}
        for word, values in tests.items():
            if word in COLOURS and not any(v for v in values):
                continue  # no instance of this colour: nothing to refer to, undecided ones aside
            if any(v is None for v in values):
                continue
            keep = [m for m, v in zip(members, values) if v]
            if keep and len(keep) < count:
                kept[word] = keep
                out.append(CropReferent(Referent(category, (word,), count=len(keep)), mask_of(keep)))
        for colour in (c for c in COLOURS if c in kept):
            for p in (p for p in POSITIONS if p in kept):
                both = sorted(set(kept[colour]) & set(kept[p]))
                if both and both != kept[colour] and both != kept[p]:
                    out.append(CropReferent(Referent(category, (colour, p), count=len(both)), mask_of(both)))
        for phrase, subject, obj in relations:
            if subject != category:
                continue
            decided = _next_to(facts, members, categories[obj], visible, gsd_m, labels.shape, rules,
                               min_visible)
            if decided is None:
                continue
            keep = [m for m, v in zip(members, decided) if v]
            if keep:
                out.append(CropReferent(Referent(category, (), phrase, count=len(keep)), mask_of(keep)))
    return out


def _next_to(facts: ImageFacts, members: list[int], object_classes: frozenset[str],
             visible: Mapping[int, float], gsd_m: float, shape: tuple[int, int],
             rules: VehicleRules, min_visible: float) -> list[bool] | None:
    """Per subject: is a box of the object classes within ``next_to_m``; ``None`` when any
    subject cannot be decided (the object is not in view, or the distance leaves the image)."""
    limit = rules.next_to_m / gsd_m
    height, width = shape
    result = []
    for i in members:
        b = facts.boxes[i]
        near = [j for j, o in enumerate(facts.boxes) if j != i and o.cls in object_classes
                and _gap(b, o) <= limit]
        if any(visible.get(j, 0.0) < min_visible for j in near):
            return None  # the object it is next to is (mostly) outside the crop
        if not near and min(b.x0, b.y0, width - b.x1, height - b.y1) <= limit:
            return None  # an object could stand just past the image edge, unlabelled
        result.append(bool(near))
    return result
