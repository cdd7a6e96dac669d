"""Per-crop geometry: class masks, instances (connected components), distances in metres.

A :class:`CropContext` wraps one crop of the class map (``0`` = ignored or nodata, ``i`` = the
``i``-th non-ignored class) at the *source* resolution, so that buffers given in metres become
pixels through the scene's ground sample distance and decisions do not depend on the GSD.

Distances: the *gap* between two pixels is the distance between their centres minus one pixel,
times the GSD — the width of what lies between them. Two 4-neighbours have a gap of 0 m, a pixel
two columns away a gap of one pixel. "Within ``b`` m of X" means "gap to the nearest pixel of X is
at most ``b`` m".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

_CROSS = ndimage.generate_binary_structure(2, 1)
_SQUARE = ndimage.generate_binary_structure(2, 2)
# A gap equal to the buffer must count as within it despite float rounding of the EDT.
_EPS = 1e-6


@dataclass(frozen=True)
class Instances:
    """Connected components of one mask: ``labels`` (0 = not in the mask, 1..count)."""

    labels: np.ndarray
    count: int
    areas_px: np.ndarray  # pixels per instance, index 0 unused

    def per_instance(self, pixels: np.ndarray) -> np.ndarray:
        """How many pixels of each instance (1..count) are set in the boolean image ``pixels``."""
        return np.bincount(self.labels[pixels], minlength=self.count + 1)[1:]

    def select(self, keep: np.ndarray) -> np.ndarray:
        """Boolean mask of the instances whose ``keep`` entry (one per instance, 1..count) is true."""
        table = np.zeros(self.count + 1, dtype=bool)
        table[1:] = keep
        return table[self.labels]

    def boundary(self) -> np.ndarray:
        """Pixels of an instance with a 4-neighbour inside the crop that is not in the instance.

        Pixels on the crop's edge are boundary only through their in-crop neighbours: what lies
        beyond the crop is unknown, so it neither supports nor contradicts a relation. (Components
        are never 4-adjacent to each other, so eroding the union erodes each instance alone.)
        """
        inside = self.labels > 0
        return inside & ~ndimage.binary_erosion(inside, structure=_CROSS, border_value=1)


class CropContext:
    """Masks, instances and distance maps of one crop of a class map, cached per class set."""

    def __init__(self, class_map: np.ndarray, class_index: Mapping[str, int], gsd_m: float,
                 connectivity: int = 8, min_instance_area_m2: float = 0.0) -> None:
        if gsd_m <= 0:
            raise ValueError("gsd_m must be positive")
        self.class_map = class_map
        self.class_index = dict(class_index)
        self.gsd_m = float(gsd_m)
        self.pixel_area_m2 = self.gsd_m ** 2
        self.structure = _SQUARE if connectivity == 8 else _CROSS
        self.min_instance_px = min_instance_area_m2 / self.pixel_area_m2
        self._masks: dict[frozenset[str], np.ndarray] = {}
        self._distances: dict[frozenset[str], np.ndarray | None] = {}

    @property
    def shape(self) -> tuple[int, int]:
        return self.class_map.shape

    def mask(self, classes: Iterable[str]) -> np.ndarray:
        """Pixels of any of ``classes`` (an exact union of the class masks)."""
        key = frozenset(classes)
        if key not in self._masks:
            table = np.zeros(len(self.class_index) + 1, dtype=bool)
            table[[self.class_index[name] for name in key]] = True
            self._masks[key] = table[self.class_map]
        return self._masks[key]

    def ignored_share(self) -> float:
        return float(np.mean(self.class_map == 0))

    def distance_px(self, classes: Iterable[str]) -> np.ndarray | None:
        """Centre-to-centre distance (px) of every pixel to the nearest pixel of ``classes``;
        ``None`` when the crop has none of them."""
        key = frozenset(classes)
        if key not in self._distances:
            mask = self.mask(key)
            self._distances[key] = (ndimage.distance_transform_edt(~mask) if mask.any() else None)
        return self._distances[key]

    def buffer_px(self, buffer_m: float) -> float:
        return buffer_m / self.gsd_m

    def near(self, classes: Iterable[str], buffer_m: float) -> np.ndarray:
        """Pixels whose gap to the nearest pixel of ``classes`` is at most ``buffer_m`` metres
        (pixels of ``classes`` themselves included)."""
        distance = self.distance_px(classes)
        if distance is None:
            return np.zeros(self.shape, dtype=bool)
        return distance <= self.buffer_px(buffer_m) + 1.0 + _EPS

    def instances(self, mask: np.ndarray) -> Instances:
        """Connected components of ``mask``; those under the minimum instance area are left out
        (label noise, not objects)."""
        labels, count = ndimage.label(mask, structure=self.structure)
        areas = np.bincount(labels.ravel(), minlength=count + 1)
        if self.min_instance_px > 0 and count:
            small = areas < self.min_instance_px
            small[0] = False
            if small.any():
                labels[small[labels]] = 0
                labels, count = ndimage.label(labels > 0, structure=self.structure)
                areas = np.bincount(labels.ravel(), minlength=count + 1)
        return Instances(labels=labels, count=int(count), areas_px=areas)

    def areas_m2(self, instances: Instances) -> np.ndarray:
        """Area of each instance (1..count) in square metres."""
        return instances.areas_px[1:] * self.pixel_area_m2
