"""Test data of the box-label sources: painted vehicles on a road, their YOLO labels, a combined
config and a small grammar, all written as real files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from PIL import Image

NAMES = ["car", "truck", "bus", "minibus", "cyclist"]
ROAD = (110, 112, 115)
COLOURS = {"red": (200, 25, 30), "white": (240, 240, 238), "blue": (30, 50, 190),
           "black": (20, 20, 22), "yellow": (225, 215, 40)}


def paint_scene(width: int, height: int, vehicles: list[tuple[str, str, int, int, int, int]]) -> np.ndarray:
    """A road-grey image with each vehicle ``(class, colour, x0, y0, x1, y1)`` painted as a
    rectangle of its colour with a dark windscreen stripe (as real cars have)."""
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = ROAD
    for _, colour, x0, y0, x1, y1 in vehicles:
        image[y0:y1, x0:x1] = COLOURS[colour]
        if x1 - x0 >= y1 - y0:  # windscreen across the long axis
            mid = x0 + (x1 - x0) // 3
            image[y0 + 1:y1 - 1, mid:mid + 2] = (35, 38, 45)
        else:
            mid = y0 + (y1 - y0) // 3
            image[mid:mid + 2, x0 + 1:x1 - 1] = (35, 38, 45)
    return image


def yolo_lines(width: int, height: int, vehicles) -> list[str]:
    """YOLO label lines of the painted vehicles (pixel-exact boxes)."""
    lines = []
    for cls, _, x0, y0, x1, y1 in vehicles:
        lines.append(f"{NAMES.index(cls)} {(x0 + x1) / 2 / width:.6f} {(y0 + y1) / 2 / height:.6f} "
                     f"{(x1 - x0) / width:.6f} {(y1 - y0) / height:.6f}")
    return lines


def write_source(root: Path, images: dict[str, list]) -> Path:
    """``root/images/NAME.png`` + ``root/labels/NAME.txt`` per entry ``NAME: vehicles`` (200 px
    square images); returns ``root``."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for name, vehicles in images.items():
        Image.fromarray(paint_scene(200, 200, vehicles)).save(root / "images" / f"{name}.png")
        (root / "labels" / f"{name}.txt").write_text("\n".join(yolo_lines(200, 200, vehicles)) + "\n")
    return root


def grammar(share: float = 0.5, words: tuple[str, ...] = ("automobile",)) -> dict:
    return {
        "nouns": {"vehicle": ["vehicle/vehicles"], "car": ["car/cars", "automobile/automobiles"],
                  "bus": ["bus/buses"], "light-duty vehicle": ["light vehicle/light vehicles"],
                  "heavy-duty vehicle": ["heavy vehicle/heavy vehicles"]},
        "attributes": {w: {"pre": [w]} for w in ("red", "white", "blue", "black", "yellow", "grey",
                                                  "green", "large", "small")}
        | {w: {"post": [f"on the {w}", f"at the {w}"]} for w in ("left", "right", "top", "bottom")}
        | {"centre": {"post": ["in the centre"]}, "in a row": {"post": ["in a row"]},
           "alone": {"post": ["alone"]}},
        "relations": {"next to the bus": {"post": ["next to the bus", "beside the bus"]}},
        "frames": {"any": ["{np}", "the {np}"], "singular": ["find the {np}"], "plural": ["all {np}"]},
        "heldout": {"share": share, "seed": 3, "words": list(words)},
    }


def combined_config(folder: Path, source_root: Path, groups: list[dict], **extra) -> Path:
    """A combined config (and its grammar) in ``folder`` over one box source at ``source_root``."""
    (folder / "grammar.yaml").write_text(yaml.safe_dump(grammar()), encoding="utf-8")
    config = {
        "name": "test", "grammar": "grammar.yaml", "output_size": 64, "seed": 0,
        "sources": [{
            "name": "vehicles", "kind": "boxes", "root": str(source_root.absolute()),
            "images": "images/*.png", "labels": "{dir}/../labels/{stem}.txt", "format": "yolo",
            "names": NAMES, "box_mask": "fill", "window_m": 20, "stride_m": 10,
            "categories": {"vehicle": ["car", "bus"], "car": ["car"], "bus": ["bus"],
                           "light-duty vehicle": ["car"], "heavy-duty vehicle": ["bus"]},
            "relations": [{"phrase": "next to the bus", "subject": "car", "object": "bus"}],
            "groups": groups, "gsd": [{"match": ".", "gsd_m": 0.1}], **extra,
        }],
    }
    path = folder / "combined.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path
