"""One data set from several sources: land-cover label rasters and box-labelled vehicle images,
each with its own GSD, classes, categories and split, phrased through the paraphrase grammar.

``python -m training.builder --config training/builder/configs/combined.yaml --out DIR``.
The config lists ``sources`` (see ``configs/combined.yaml`` for every key); paths are relative
to the repository root. Splits are by image group (a regex on the image's path under the
source root; ``exclude`` leaves an image out), never by crop. Each triplet records its source,
GSD, canonical meaning and whether its phrasing is seen or held out (``crops.json``).
"""

from __future__ import annotations

import os
import random
import re
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image
from scipy import ndimage

from rrsis_geo.errors import InputError
from training.builder.boxes import CocoReader, VocReader, YoloReader
from training.builder.boxmask import METHODS, instance_masks
from training.builder.build import resize_image, resize_mask
from training.builder.config import SPLITS, load_config
from training.builder.expressions import crop_expressions, plan_expressions
from training.builder.geometry import CropContext
from training.builder.paraphrase import Grammar, Referent, load_grammar
from training.builder.scenes import SceneSpec, inspect_scene, open_image, read_class_map, read_rgb
from training.builder.tiling import crop_windows
from training.builder.vehicles import VehicleRules, crop_referents, image_facts
from training.builder.writer import DatasetWriter, check_output

ROOT = Path(__file__).resolve().parents[2]
TOP_KEYS = {"name", "grammar", "output_size", "per_referent", "max_referents_per_crop", "seed", "sources"}
_COMMON = {"name", "kind", "root", "images", "labels", "groups"}
SOURCE_KEYS = {
    "labels": _COMMON | {"classes", "gsd_m"},
    "boxes": _COMMON | {"format", "names", "box_mask", "window_m", "stride_m", "categories", "relations",
                        "rules", "gsd", "reference_class", "reference_length_m"},
}
EXCLUDE = "exclude"
Progress = Callable[[int, int, str], None]


@dataclass
class Build:
    """What the sources add to, and how phrasings are chosen."""

    writer: DatasetWriter
    grammar: Grammar
    size: int
    per_referent: dict[str, int]
    max_referents: int
    seed: int
    samples: list[dict[str, Any]]
    crops: list[dict[str, Any]]
    dropped: Counter


def _load_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"config {path} cannot be read: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("sources"), list) or not data["sources"]:
        raise InputError(f"{path}: a combined config needs 'sources:' with a list of sources")
    _reject_unknown(data, TOP_KEYS, f"{path}")
    for k, source in enumerate(data["sources"]):
        if isinstance(source, dict) and source.get("kind") in SOURCE_KEYS:
            _reject_unknown(source, SOURCE_KEYS[source["kind"]], f"{path}: sources[{k}]")
    return data


def _reject_unknown(data: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise InputError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def _split_of(rel: str, groups: list[dict], where: str) -> str:
    for group in groups:
        if re.search(group["match"], rel):
            return group["split"]
    raise InputError(f"{where}: no group matches {rel!r}; add a catch-all group (match: '.')")


def _check_groups(groups: Any, where: str) -> list[dict]:
    if not isinstance(groups, list) or not groups:
        raise InputError(f"{where}: 'groups' must list {{match: REGEX, split: train|val|test|exclude}}")
    for g in groups:
        if not isinstance(g, dict) or g.get("split") not in (*SPLITS, EXCLUDE) or "match" not in g:
            raise InputError(f"{where}: group {g!r} needs 'match' and a split among "
                             f"{', '.join((*SPLITS, EXCLUDE))}")
        try:
            re.compile(g["match"])
        except re.error as exc:
            raise InputError(f"{where}: group regex {g['match']!r}: {exc}") from None
    return groups


def build_combined(config_path: str | Path, out: str | Path, *, overwrite: bool = False,
                   progress: Progress | None = None, limit: int | None = None) -> dict[str, Any]:
    """Build the data set a combined config describes; returns ``stats.json``'s content.
    ``limit``: at most that many images per source (quick looks; not for real builds)."""
    started = time.perf_counter()
    config_path = Path(config_path)
    data = _load_yaml(config_path)
    grammar = load_grammar(config_path.parent / data.get("grammar", "grammar.yaml"))
    out = Path(out)
    check_output(out, overwrite, [ROOT.parent / "shared"])
    with DatasetWriter(out, overwrite) as writer:
        build = Build(writer=writer, grammar=grammar, size=int(data.get("output_size", 256)),
                      per_referent={**{"train": 1, "val": 2, "test": 2}, **(data.get("per_referent") or {})},
                      max_referents=int(data.get("max_referents_per_crop", 12)),
                      seed=int(data.get("seed", 0)), samples=[], crops=[], dropped=Counter())
        for k, source in enumerate(data["sources"]):
            where = f"{config_path}: sources[{k}]"
            if not isinstance(source, dict) or source.get("kind") not in ("labels", "boxes") \
                    or not source.get("name"):
                raise InputError(f"{where}: needs 'name' and 'kind' (labels or boxes)")
            if source["kind"] == "labels":
                _label_source(build, source, config_path.parent, where, progress, limit)
            else:
                _box_source(build, source, where, progress, limit)
        if not build.samples:
            raise InputError(f"{config_path}: no triplet was produced; check the sources' paths")
        stats = combined_stats(build.samples, build.crops, grammar, dict(build.dropped),
                               time.perf_counter() - started, str(config_path))
        writer.write_json("crops.json", {"format": "refsegrs-crops", "crops": build.crops})
        writer.write_json("stats.json", stats)
        writer.publish()
    return stats


def _files(source: dict, where: str, limit: int | None) -> tuple[Path, list[tuple[Path, str]]]:
    root = ROOT / source.get("root", "")
    if not root.is_dir():
        raise InputError(f"{where}: source folder {root} does not exist")
    groups = _check_groups(source.get("groups"), where)
    found = []
    for path in sorted(root.glob(source.get("images", "images/*"))):
        rel = path.relative_to(root).as_posix()
        split = _split_of(rel, groups, where)
        if split != EXCLUDE:
            found.append((path, split))
    if not found:
        raise InputError(f"{where}: no image matches {source.get('images')!r} under {root}")
    return root, found[:limit] if limit else found


def _label_path(source: dict, image: Path) -> Path:
    pattern = source.get("labels", "{dir}/{stem}_labels.tif")
    return Path(os.path.normpath(pattern.format(dir=image.parent.as_posix(), stem=image.stem)))


# ------------------------------------------------------------------------------- label rasters
def _label_source(build: Build, source: dict, config_dir: Path, where: str,
                  progress: Progress | None, limit: int | None) -> None:
    classes = load_config(config_dir / source["classes"])
    _, files = _files(source, where, limit)
    plan = plan_expressions(classes)
    window, stride = classes.tiling.window, classes.tiling.stride
    for n, (image_path, split) in enumerate(files, start=1):
        spec = SceneSpec(image_path, _label_path(source, image_path), split,
                         name=f"{source['name']}-{image_path.parent.parent.name}-{image_path.stem}",
                         gsd_m=source.get("gsd_m"))
        info = inspect_scene(spec, classes)
        class_map = read_class_map(info, classes)
        with open_image(info) as src:
            for win in crop_windows(info.height, info.width, window, stride):
                ctx = CropContext(class_map[win.row_off:win.row_end, win.col_off:win.col_end],
                                  classes.class_index(), info.gsd_m, classes.connectivity,
                                  classes.filters.min_instance_area_m2)
                if ctx.ignored_share() > classes.filters.max_ignored_share:
                    build.dropped["windows_mostly_ignored"] += 1
                    continue
                found = []
                for expression, mask in crop_expressions(ctx, plan, classes.filters.min_area_m2,
                                                         classes.filters.min_share):
                    count, extent = _extent(mask, info.gsd_m)
                    referent = Referent(expression.category,
                                        (expression.attribute.word,) if expression.attribute else (),
                                        expression.relation.phrase if expression.relation else None,
                                        count, extent)
                    found.append((referent, mask))
                crop_id = f"{info.name}_r{win.row_off}_c{win.col_off}"
                _emit(build, source, crop_id, info.name, split, info.gsd_m * win.width / build.size,
                      info.gsd_m, win.as_dict(), lambda w=win, s=src, i=info: read_rgb(s, i, w), found)
        if progress is not None:
            progress(n, len(files), source["name"])


def _extent(mask: np.ndarray, gsd_m: float) -> tuple[int, float | None]:
    """Instances of a mask and the largest one's area in m² (``None`` when one is cut by the
    crop's edge: its size is unknown)."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    if (edge > 0).any():
        return count, None
    areas = np.bincount(labels.ravel())[1:]
    return count, float(areas.max()) * gsd_m ** 2 if count else None


# ------------------------------------------------------------------------------- box labels
def _reader(source: dict, where: str) -> Callable[[Path, Path, int, int], list]:
    """``read(label_path, image_path, width, height) -> boxes`` for the source's format (COCO:
    ``labels`` names the one json of all images, matched by file name)."""
    names = source.get("names")
    if not isinstance(names, list) or not names:
        raise InputError(f"{where}: 'names' must list the label classes in index order")
    fmt = source.get("format", "yolo")
    if fmt in ("yolo", "voc"):
        reader = YoloReader(tuple(names)) if fmt == "yolo" else VocReader(tuple(names))
        return lambda label, image, w, h: reader(label, w, h)
    if fmt == "coco":
        return lambda label, image, w, h: CocoReader(tuple(names), image.name)(label, w, h)
    raise InputError(f"{where}: format {fmt!r} is not yolo, voc or coco")


def _series_gsd(source: dict, records: list[tuple[Path, str, list, tuple[int, int]]], where: str) -> dict[Path, float]:
    """GSD of each image: given per series, or 4.5 m over the series' median car box length."""
    length_m = float(source.get("reference_length_m", 4.5))
    reference = source.get("reference_class", "car")
    series = source.get("gsd") or [{"match": "."}]
    out: dict[Path, float] = {}
    for entry in series:
        members = [r for r in records if r[0] not in out and re.search(entry["match"], r[0].name)]
        if not members:
            continue
        if entry.get("gsd_m"):
            gsd = float(entry["gsd_m"])
        else:
            lengths = [max(b.width, b.height) for _, _, boxes, _ in members for b in boxes
                       if b.cls == reference]
            if not lengths:
                raise InputError(f"{where}: series {entry['match']!r} has no {reference} box to "
                                 "estimate its GSD from; give gsd_m")
            gsd = length_m / statistics.median(lengths)
        for r in members:
            out[r[0]] = gsd
    missing = [r[0].name for r in records if r[0] not in out]
    if missing:
        raise InputError(f"{where}: no gsd series matches {missing[:3]}")
    return out


def _box_source(build: Build, source: dict, where: str, progress: Progress | None,
                limit: int | None) -> None:
    reader = _reader(source, where)
    _, files = _files(source, where, limit)
    method = source.get("box_mask", "oriented")
    if method not in METHODS:
        raise InputError(f"{where}: box_mask {method!r} is not one of {', '.join(METHODS)}")
    categories = {str(k): frozenset(v) for k, v in (source.get("categories") or {}).items()}
    if not categories:
        raise InputError(f"{where}: 'categories' must map category -> list of classes")
    relations = [(r["phrase"], r["subject"], r["object"]) for r in source.get("relations") or []]
    for phrase, subject, obj in relations:
        if subject not in categories or obj not in categories or categories[subject] & categories[obj]:
            raise InputError(f"{where}: relation {phrase!r} needs two categories with no class in common")
    rules = VehicleRules(**(source.get("rules") or {}))
    records = []
    for path, split in files:
        with Image.open(path) as im:
            size = im.size
        boxes = reader(_label_path(source, path), path, *size)
        records.append((path, split, boxes, size))
    gsd = _series_gsd(source, records, where)
    medians = {}
    for category, classes in categories.items():
        lengths = [max(b.width, b.height) * gsd[p] for p, _, boxes, _ in records for b in boxes if b.cls in classes]
        if lengths:
            medians[category] = statistics.median(lengths)
    window_m, stride_m = float(source.get("window_m", 44)), float(source.get("stride_m", 22))
    for n, (path, split, boxes, (width, height)) in enumerate(records, start=1):
        image = np.asarray(Image.open(path).convert("RGB"))
        labels = instance_masks(boxes, image, method)
        facts = image_facts(boxes, labels, image, gsd[path], rules)
        window = min(round(window_m / gsd[path]), height, width)
        stride = max(1, round(stride_m / gsd[path]))
        name = f"{source['name']}-{path.stem}"
        for win in crop_windows(height, width, window, stride):
            bounds = (win.row_off, win.row_end, win.col_off, win.col_end)
            found = [(c.referent, c.mask) for c in
                     crop_referents(facts, labels, bounds, categories, medians, relations,
                                    gsd[path], rules)]
            crop_id = f"{name}_r{win.row_off}_c{win.col_off}"
            _emit(build, source, crop_id, name, split, gsd[path] * win.width / build.size, gsd[path],
                  win.as_dict(), lambda b=bounds, im=image: im[b[0]:b[1], b[2]:b[3]], found)
        if progress is not None:
            progress(n, len(records), source["name"])


# ------------------------------------------------------------------------------- writing
def _emit(build: Build, source: dict, crop_id: str, scene: str, split: str, gsd_m: float,
          source_gsd_m: float, window: dict, read, found: list[tuple[Referent, np.ndarray]]) -> None:
    """Choose referents and phrasings for one crop and write its triplets."""
    rng = random.Random(f"{build.seed}:{crop_id}")
    small = []
    for referent, mask in found:
        resized = resize_mask(mask, build.size)
        if resized.any():
            small.append((referent, resized))
        else:
            build.dropped["masks_empty_after_resize"] += 1
    if not small:
        build.dropped["windows_without_expressions"] += 1
        return
    plain = [x for x in small if not x[0].attributes and not x[0].relation]
    other = [x for x in small if x[0].attributes or x[0].relation]
    rng.shuffle(other)
    chosen = plain + other[:max(0, build.max_referents - len(plain))]
    build.dropped["referents_over_cap"] += len(small) - len(chosen)
    triplets = []
    for referent, mask in chosen:
        seen, heldout = build.grammar.split_phrasings(referent)
        if split == "train":
            picks = [(t, False) for t in rng.sample(seen, min(len(seen), build.per_referent["train"]))]
        else:
            k = build.per_referent.get(split, 2)
            picks = [(t, False) for t in rng.sample(seen, min(len(seen), max(1, k - 1 if heldout else k)))]
            picks += [(t, True) for t in rng.sample(heldout, min(len(heldout), k - len(picks)))]
        triplets += [(referent, mask, text, held) for text, held in picks]
    ids = [f"{crop_id}_{k:02d}" for k in range(len(triplets))]
    image = resize_image(np.ascontiguousarray(read()), build.size)
    build.writer.write_crop(ids, image, [m for _, m, _, _ in triplets], None, None)
    records = []
    for sample_id, (referent, mask, text, held) in zip(ids, triplets):
        build.writer.add_phrase(split, sample_id, text)
        sample = {"id": sample_id, "expression": text, "canonical": build.grammar.canonical(referent),
                  "template": referent.template, "category": referent.category,
                  "attribute": " ".join(referent.attributes) or None, "relation": referent.relation,
                  "phrasing": "heldout" if held else "seen", "instances": referent.count,
                  "foreground_share": round(float(mask.mean()), 5)}
        records.append(sample)
        build.samples.append({**sample, "split": split, "source": source["name"], "scene": scene})
    build.crops.append({"crop_id": crop_id, "source": source["name"], "scene": scene, "split": split,
                        "window": window, "size": [build.size, build.size], "source_gsd_m": source_gsd_m,
                        "gsd_m": round(gsd_m, 6), "crs": None, "transform": None, "samples": records})


def _table(samples: list[dict], key: str) -> dict[str, dict[str, int]]:
    table: dict[str, Counter] = defaultdict(Counter)
    for s in samples:
        if s.get(key) is not None:
            table[str(s[key])][s["split"]] += 1
    return {k: dict(v) for k, v in sorted(table.items())}


def combined_stats(samples: list[dict], crops: list[dict], grammar: Grammar, dropped: dict,
                   seconds: float, config: str) -> dict[str, Any]:
    """``stats.json`` of a combined build: counts per split × source, category, template,
    phrasing (seen/held-out), and the vocabulary the readers use."""
    splits = [s for s in SPLITS if any(x["split"] == s for x in samples)]
    expression_category: dict[str, str] = {}
    for s in samples:
        expression_category.setdefault(s["expression"], s["category"])
    return {
        "config": config,
        "splits": {sp: {"triplets": sum(s["split"] == sp for s in samples),
                        "crops": sum(c["split"] == sp for c in crops),
                        "scenes": len({c["scene"] for c in crops if c["split"] == sp}),
                        "expressions": len({s["expression"] for s in samples if s["split"] == sp})}
                   for sp in splits},
        "totals": {"triplets": len(samples), "crops": len(crops),
                   "scenes": len({c["scene"] for c in crops}),
                   "expressions": len({s["expression"] for s in samples})},
        "per_source": _table(samples, "source"),
        "per_category": _table(samples, "category"),
        "per_template": _table(samples, "template"),
        "per_phrasing": _table(samples, "phrasing"),
        "per_source_phrasing": _table([{**s, "sp": f"{s['source']}/{s['phrasing']}"} for s in samples], "sp"),
        "per_attribute": _table(samples, "attribute"),
        "per_relation": _table(samples, "relation"),
        "vocabulary": {"categories": sorted({s["category"] for s in samples}),
                       "attributes": sorted(grammar.attributes), "relations": sorted(grammar.relations),
                       "expression_category": expression_category},
        "heldout": {"share": grammar.heldout_share, "seed": grammar.heldout_seed,
                    "words": list(grammar.heldout_words)},
        "dropped": dropped,
        "seconds": round(seconds, 1),
    }
