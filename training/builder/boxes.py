"""Box labels: one reader interface, YOLO txt, Pascal VOC xml and COCO json behind it.

A reader turns the label file of one image into :class:`Box` objects in *pixel* coordinates
(``x0, y0, x1, y1``, half-open, axis-aligned) with a class name. Every problem in a label file
is an :class:`BoxLabelError` naming the file and, where the format has lines, the line.

* YOLO: ``class cx cy w h`` per line, all four as fractions of the image size, class an index
  into the ``names`` list of the source.
* VOC: ``<object><name>car</name><bndbox><xmin>…`` in an xml per image (1-based pixel corners).
* COCO: one json for many images: ``images[{id, file_name}]``, ``annotations[{image_id,
  category_id, bbox: [x, y, w, h]}]``, ``categories[{id, name}]``.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from rrsis_geo.errors import InputError


# Boxes of vehicles cut by the image edge overshoot it by up to 0.2 % in the real labels
# (annotation tools round); up to this much is clipped, more is an error.
YOLO_SLACK = 0.005


class BoxLabelError(InputError):
    """A box label file that cannot be used (names the file and line)."""


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixels of its image (``x1``/``y1`` exclusive) and its class."""

    cls: str
    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def center(self) -> tuple[float, float]:
        return (self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2


class BoxReader(Protocol):
    """Reads the boxes of one image (``width`` × ``height`` px) from its label file."""

    def __call__(self, path: Path, width: int, height: int) -> list[Box]: ...


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


@dataclass(frozen=True)
class YoloReader:
    """YOLO txt boxes; ``names[i]`` is the class of index ``i``."""

    names: Sequence[str]
    allow_empty: bool = False

    def __call__(self, path: Path, width: int, height: int) -> list[Box]:
        path = Path(path)
        if not path.is_file():
            raise BoxLabelError(f"{path}: label file does not exist")
        boxes = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            boxes.append(self._parse(path, number, line, width, height))
        if not boxes and not self.allow_empty:
            raise BoxLabelError(f"{path}: no boxes (empty label file); remove the image from the "
                                "source or list it under 'allow_empty'")
        return boxes

    def _parse(self, path: Path, number: int, line: str, width: int, height: int) -> Box:
        where = f"{path}:{number}"
        parts = line.split()
        if len(parts) != 5:
            raise BoxLabelError(f"{where}: expected 'class cx cy w h', got {line.strip()!r}")
        try:
            index = int(parts[0])
            cx, cy, w, h = (_finite(p) for p in parts[1:])
        except ValueError:
            raise BoxLabelError(f"{where}: expected an integer class and four numbers, got "
                                f"{line.strip()!r}") from None
        if not 0 <= index < len(self.names):
            raise BoxLabelError(f"{where}: unknown class {index}; the source's classes are "
                                + ", ".join(f"{i} {n}" for i, n in enumerate(self.names)))
        x0, x1, y0, y1 = cx - w / 2, cx + w / 2, cy - h / 2, cy + h / 2
        if w <= 0 or h <= 0 or min(x0, y0) < -YOLO_SLACK or max(x1, y1) > 1 + YOLO_SLACK:
            raise BoxLabelError(f"{where}: box {line.strip()!r} lies outside the image (YOLO "
                                "coordinates are fractions 0..1 of the image size, w and h > 0)")
        return Box(self.names[index], max(0.0, x0) * width, max(0.0, y0) * height,
                   min(1.0, x1) * width, min(1.0, y1) * height)


@dataclass(frozen=True)
class VocReader:
    """Pascal VOC xml boxes; ``names`` lists the classes accepted."""

    names: Sequence[str]

    def __call__(self, path: Path, width: int, height: int) -> list[Box]:
        path = Path(path)
        try:
            root = ET.parse(path).getroot()
        except (OSError, ET.ParseError) as exc:
            raise BoxLabelError(f"{path}: not a readable VOC xml ({exc})") from None
        boxes = []
        for k, obj in enumerate(root.iter("object"), start=1):
            where = f"{path}: object {k}"
            name = (obj.findtext("name") or "").strip()
            if name not in self.names:
                raise BoxLabelError(f"{where}: unknown class {name!r}; classes are {list(self.names)}")
            try:
                x0, y0, x1, y1 = (_finite(obj.findtext(f"bndbox/{t}") or "")
                                  for t in ("xmin", "ymin", "xmax", "ymax"))
            except ValueError:
                raise BoxLabelError(f"{where}: bndbox needs numeric xmin, ymin, xmax, ymax") from None
            # VOC corners are 1-based inclusive pixels
            box = Box(name, x0 - 1, y0 - 1, x1, y1)
            _check_pixels(box, width, height, where)
            boxes.append(box)
        if not boxes:
            raise BoxLabelError(f"{path}: no <object> boxes")
        return boxes


def _check_pixels(box: Box, width: int, height: int, where: str) -> None:
    if box.width <= 0 or box.height <= 0 or box.x0 < -0.5 or box.y0 < -0.5 \
            or box.x1 > width + 0.5 or box.y1 > height + 0.5:
        raise BoxLabelError(f"{where}: box ({box.x0:g}, {box.y0:g}, {box.x1:g}, {box.y1:g}) lies "
                            f"outside the {width}×{height} px image or is empty")


def read_coco(path: Path, names: Sequence[str]) -> dict[str, list[tuple[int, Box]]]:
    """``{file_name: [(annotation index, Box), ...]}`` of a COCO json (pixel boxes, unchecked
    against image sizes; :class:`CocoReader` checks them per image)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        images = {int(i["id"]): str(i["file_name"]) for i in data["images"]}
        categories = {int(c["id"]): str(c["name"]) for c in data["categories"]}
        annotations = data["annotations"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BoxLabelError(f"{path}: not a COCO json with images, categories and annotations "
                            f"({exc})") from None
    out: dict[str, list[tuple[int, Box]]] = {name: [] for name in images.values()}
    for k, ann in enumerate(annotations):
        where = f"{path}: annotations[{k}]"
        try:
            image, category = images[int(ann["image_id"])], categories[int(ann["category_id"])]
            x, y, w, h = (float(v) for v in ann["bbox"])
        except (KeyError, ValueError, TypeError):
            raise BoxLabelError(f"{where}: needs a known image_id and category_id and bbox [x, y, w, h]") from None
        if category not in names:
            raise BoxLabelError(f"{where}: unknown class {category!r}; classes are {list(names)}")
        out[image].append((k, Box(category, x, y, x + w, y + h)))
    return out


@dataclass(frozen=True)
class CocoReader:
    """Boxes of one image from a COCO json (``path`` is the json; the image is ``file_name``)."""

    names: Sequence[str]
    file_name: str

    def __call__(self, path: Path, width: int, height: int) -> list[Box]:
        entries = read_coco(path, self.names).get(self.file_name)
        if entries is None:
            raise BoxLabelError(f"{path}: no image with file_name {self.file_name!r}")
        for k, box in entries:
            _check_pixels(box, width, height, f"{path}: annotations[{k}]")
        if not entries:
            raise BoxLabelError(f"{path}: image {self.file_name!r} has no boxes")
        return [box for _, box in entries]
