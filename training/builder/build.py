"""The build: scenes → crops → expressions and masks → the RefSegRS layout."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from rrsis_geo.errors import InputError
from training.builder.config import BuilderConfig
from training.builder.expressions import Expression, crop_expressions, plan_expressions
from training.builder.geometry import CropContext
from training.builder.scenes import (REGION, SceneInfo, SceneSpec, inspect_scene, open_image,
                                     read_class_map, read_rgb)
from training.builder.stats import summarize
from training.builder.tiling import CropWindow, crop_windows, region_split
from training.builder.writer import DatasetWriter, check_output

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class PlannedCrop:
    scene: SceneInfo
    window: CropWindow
    split: str

    @property
    def crop_id(self) -> str:
        return f"{self.scene.name}_r{self.window.row_off}_c{self.window.col_off}"


def plan_crops(scenes: Sequence[SceneInfo], config: BuilderConfig) -> tuple[list[PlannedCrop], int]:
    """Every crop window of every scene with its split, and how many windows were dropped for
    straddling two region splits."""
    tiling = config.tiling
    crops: list[PlannedCrop] = []
    dropped = 0
    for scene in scenes:
        if scene.spec.split == REGION:
            block = config.split.block_size or 2 * tiling.window
            result = region_split(scene.height, scene.width, tiling.window, tiling.stride, block,
                                  config.split.fractions, config.split.seed)
            dropped += result.dropped
            windows = sorted((w, s) for s, ws in result.windows.items() for w in ws)
            crops += [PlannedCrop(scene, w, s) for w, s in windows]
        else:
            crops += [PlannedCrop(scene, w, scene.spec.split)
                      for w in crop_windows(scene.height, scene.width, tiling.window, tiling.stride)]
    return crops, dropped


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """RGB crop to ``size`` × ``size`` (bilinear; Pillow antialiases when shrinking)."""
    if image.shape[:2] == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Boolean mask to ``size`` × ``size``: a pixel is set when at least half of the area it
    covers is set (box filter then threshold)."""
    if mask.shape == (size, size):
        return mask
    box = Image.fromarray(mask.astype(np.uint8) * 255).resize((size, size), Image.BOX)
    return np.asarray(box) >= 128


def build_dataset(scenes: Sequence[SceneSpec], config: BuilderConfig, out: str | Path, *,
                  overwrite: bool = False, gsd_m: float | None = None,
                  progress: Progress | None = None) -> dict[str, Any]:
    """Build the dataset at ``out`` and return its ``stats.json`` content.

    Raises :class:`rrsis_geo.errors.RRSISError` subclasses for unusable input; nothing is left
    behind in that case (an existing ``out`` is only replaced, with ``overwrite``, on success).
    """
    started = time.perf_counter()
    if not scenes:
        raise InputError("no scenes given; pass --image/--labels, --scene or --scenes")
    out = Path(out)
    check_output(out, overwrite, [p for s in scenes for p in (Path(s.image), Path(s.labels))])
    plan = plan_expressions(config)
    infos = [inspect_scene(spec, config, gsd_m) for spec in scenes]
    names = [info.name for info in infos]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError(f"scene names {duplicates} repeat; give each scene a distinct 'name'")
    crops, straddling = plan_crops(infos, config)
    if not crops:
        raise InputError(f"no crop window of {config.tiling.window} px fits in any scene; lower "
                         "--window (scenes are " + ", ".join(f"{i.width}×{i.height}" for i in infos)
                         + " px)")

    samples: list[dict[str, Any]] = []
    crop_records: list[dict[str, Any]] = []
    dropped = {"windows_straddling_splits": straddling, "windows_mostly_ignored": 0,
               "windows_without_expressions": 0, "masks_empty_after_resize": 0}
    expression_category: dict[str, str] = {}
    with DatasetWriter(out, overwrite) as writer:
        done = 0
        for info in infos:
            scene_crops = [c for c in crops if c.scene is info]
            class_map = read_class_map(info, config)
            with open_image(info) as src:
                for crop in scene_crops:
                    done += 1
                    record = _build_crop(crop, class_map, src, plan, config, writer, samples,
                                         dropped, expression_category)
                    if record is not None:
                        crop_records.append(record)
                    if progress is not None:
                        progress(done, len(crops), info.name)
        if not samples:
            raise InputError("no expression passed the filters on any crop; check the class "
                             "mapping against the labels, or lower filters.min_area_m2/min_share")
        scene_records = [_scene_record(info, crop_records) for info in infos]
        stats = summarize(samples, crop_records, scene_records, config, expression_category,
                          dropped, time.perf_counter() - started)
        stats["storage"] = {"image_hardlinks": writer.links, "image_copies": writer.copies}
        writer.write_json("crops.json", {"format": "refsegrs-crops", "crops": crop_records})
        writer.write_json("stats.json", stats)
        writer.publish()
    return stats


def _build_crop(crop: PlannedCrop, class_map: np.ndarray, src, plan: list[Expression],
                config: BuilderConfig, writer: DatasetWriter, samples: list[dict[str, Any]],
                dropped: dict[str, int], expression_category: dict[str, str]) -> dict[str, Any] | None:
    win, info, size = crop.window, crop.scene, config.tiling.output_size
    ctx = CropContext(class_map[win.row_off:win.row_end, win.col_off:win.col_end],
                      config.class_index(), info.gsd_m, config.connectivity,
                      config.filters.min_instance_area_m2)
    if ctx.ignored_share() > config.filters.max_ignored_share:
        dropped["windows_mostly_ignored"] += 1
        return None
    found = []
    for expression, mask in crop_expressions(ctx, plan, config.filters.min_area_m2,
                                             config.filters.min_share):
        small = resize_mask(mask, size)
        if not small.any():
            dropped["masks_empty_after_resize"] += 1
            continue
        found.append((expression, mask, small))
    if not found:
        dropped["windows_without_expressions"] += 1
        return None

    ids = [f"{crop.crop_id}_{k:02d}" for k in range(len(found))]
    transform = info.crop_transform(win, size) if info.georeferenced else None
    image = resize_image(read_rgb(src, info, win), size)
    writer.write_crop(ids, image, [small for _, _, small in found], info.crs, transform)
    crop_samples = []
    for sample_id, (expression, mask, small) in zip(ids, found):
        writer.add_phrase(crop.split, sample_id, expression.text)
        expression_category[expression.text] = expression.category
        sample = {
            "id": sample_id, "crop_id": crop.crop_id, "split": crop.split, "scene": info.name,
            "expression": expression.text, "template": expression.template,
            "category": expression.category,
            "attribute": expression.attribute.word if expression.attribute else None,
            "relation": expression.relation.phrase if expression.relation else None,
            "foreground_share": round(float(small.mean()), 5),
            "area_m2": round(float(mask.sum()) * ctx.pixel_area_m2, 2),
        }
        samples.append(sample)
        crop_samples.append({k: v for k, v in sample.items()
                             if k not in ("crop_id", "split", "scene")})
    return {
        "crop_id": crop.crop_id, "scene": info.name, "split": crop.split,
        "source_image": str(Path(info.spec.image).absolute()),
        "source_labels": str(Path(info.spec.labels).absolute()),
        "window": win.as_dict(),
        "crs": info.crs.to_string() if info.crs is not None else None,
        "transform": list(transform)[:6] if transform is not None else None,
        "size": [size, size],
        "source_gsd_m": info.gsd_m,
        "gsd_m": info.gsd_m * win.width / size,
        "samples": crop_samples,
    }


def _scene_record(info: SceneInfo, crops: list[dict[str, Any]]) -> dict[str, Any]:
    own = [c for c in crops if c["scene"] == info.name]
    return {
        "name": info.name, "split": info.spec.split, "image": str(Path(info.spec.image).absolute()),
        "labels": str(Path(info.spec.labels).absolute()), "width": info.width, "height": info.height,
        "crs": info.crs.to_string() if info.crs is not None else None,
        "gsd_m": info.gsd_m, "gsd_source": info.gsd_source,
        "crops": len(own), "triplets": sum(len(c["samples"]) for c in own),
    }
