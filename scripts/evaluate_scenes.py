#!/usr/bin/env python3
"""Score a checkpoint on whole validation images, one expression per class, as a new user runs it.

    PYTHONPATH=. .venv/bin/python scripts/evaluate_scenes.py                     # default checkpoint, CPU
    PYTHONPATH=. .venv/bin/python scripts/evaluate_scenes.py --checkpoint runs/x/best --limit 1
    PYTHONPATH=. .venv/bin/python scripts/evaluate_scenes.py --sources dubai --out scenes.md \
        --json scenes.json [--overwrite] [--device cuda] [--threads 2] [--tta] [--train-phrases FILE]

``python -m training.evaluate`` scores 256 px crops with the builder's phrasings. This script runs
what a user runs, :func:`rrsis_geo.predict` (tiling, each expression at the scale the checkpoint
learned its category at, resampling, blending), on every whole validation image of the builder
config's sources, and compares its mask with the labels:

* validation images: those whose path matches a ``groups`` entry with ``split: val`` (first match
  wins, as the builder decides), read and decoded with the builder's own functions;
* each image is written as a lossless GeoTIFF with a nominal georeference (labels sources:
  EPSG:32640 at the source's ``gsd_m``; box sources: EPSG:32632 at the GSD the builder estimates
  from the median car box length of the image's series);
* targets: labels sources, the pixels of the category's classes ("unlabeled" pixels are left out
  of prediction and target); box sources, the union of the instance masks (the config's
  ``box_mask``) of the category's classes. (Image, category) pairs with an empty target are
  skipped and counted;
* two sets of expressions per category (:data:`EXPRESSIONS`): ``words``, the training word, and
  ``everyday``, other phrasings an analyst types; and a ``whole image`` baseline (every valid
  pixel predicted). mIoU = mean over images of the per-image IoU (a set of several phrasings:
  their mean per image). Whether each phrasing occurs in the builder's training expressions
  (``--train-phrases``) is reported, so that unseen phrasings can be told apart;
* precision and recall per category and set, pooled over the images (all their pixels), and for
  the categories of :data:`CONFUSED_WITH` the share of the other category's pixels marked ("car"
  on buses and trucks).

The model is loaded once and handed to ``predict`` (``segmenter=``), which is what passing
``checkpoint=`` does on every call, without reloading it per image.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from rrsis_geo.errors import InputError, OutputError, RRSISError  # noqa: E402

# Per source, per category: the training word, and everyday phrasings of the same one category.
EXPRESSIONS: dict[str, dict[str, dict[str, tuple[str, ...]]]] = {
    "dubai": {
        "building": {"words": ("building",), "everyday": ("houses", "the buildings")},
        "road": {"words": ("road",), "everyday": ("streets", "the roads")},
        "vegetation": {"words": ("vegetation",), "everyday": ("greenery", "trees")},
        "water": {"words": ("water",), "everyday": ("the pond", "pools")},
    },
    "vehicles": {
        "car": {"words": ("car",), "everyday": ("automobiles", "parked cars")},
        "vehicle": {"words": ("vehicle",), "everyday": ("motor vehicles", "the vehicles")},
        "light-duty vehicle": {"words": ("light-duty vehicle",),
                               "everyday": ("light vehicles", "passenger vehicles")},
    },
}
#: per source: category -> the other category whose pixels its expressions must not mark
#: ("car" on buses and trucks); the share of that category marked is reported
CONFUSED_WITH: dict[str, dict[str, str]] = {
    "vehicles": {"car": "heavy-duty vehicle", "light-duty vehicle": "heavy-duty vehicle"},
}
SETS = ("words", "everyday")
BASELINE = "whole image"
EPSG = {"labels": 32640, "boxes": 32632}  # nominal: UTM 40N (Dubai), UTM 32N (Munich)
ORIGIN = (500_000.0, 2_800_000.0)  # nominal upper-left corner of every scene
MEAN_LABEL = {"dubai": "Dubai single-class mIoU", "vehicles": "vehicles mIoU"}
DEFAULT_CONFIG = ROOT / "training" / "builder" / "configs" / "combined.yaml"
DEFAULT_PHRASES = ROOT / "data" / "combined_refseg" / "output_phrase_train.txt"
Log = Callable[[str], None]


@dataclass
class Source:
    """One source of the builder config, with what reading its images needs."""

    name: str
    kind: str
    spec: dict
    where: str
    categories: dict[str, frozenset[str]]
    classes: Any = None  # labels: the BuilderConfig of its classes.yaml
    reader: Any = None  # boxes: read(label, image, width, height) -> boxes


@dataclass(frozen=True)
class SceneRef:
    """A validation image: where it is and the GSD its scene is written at."""

    source: str
    path: Path
    rel: str
    gsd_m: float


@dataclass
class Truth:
    """An image's pixels, its valid pixels (None: all) and each category's target mask."""

    rgb: np.ndarray
    valid: np.ndarray | None
    targets: dict[str, np.ndarray] = field(default_factory=dict)


# ------------------------------------------------------------------------------- find images
def load_sources(config_path: Path, names: list[str]) -> list[Source]:
    """The named sources of a combined builder config, checked against :data:`EXPRESSIONS`."""
    from training.builder.combined import _load_yaml, _reader
    from training.builder.config import load_config

    data = _load_yaml(config_path)
    entries = {s.get("name"): (k, s) for k, s in enumerate(data["sources"]) if isinstance(s, dict)}
    out = []
    for name in names:
        if name not in entries:
            raise InputError(f"{config_path}: no source named {name!r} (has {', '.join(map(str, entries))})")
        if name not in EXPRESSIONS:
            raise InputError(f"source {name!r} has no expressions in EXPRESSIONS ({', '.join(EXPRESSIONS)})")
        k, spec = entries[name]
        where = f"{config_path}: sources[{k}]"
        if spec.get("kind") == "labels":
            classes = load_config(config_path.parent / spec["classes"])
            source = Source(name, "labels", spec, where, dict(classes.categories), classes=classes)
        elif spec.get("kind") == "boxes":
            categories = {str(c): frozenset(v) for c, v in (spec.get("categories") or {}).items()}
            source = Source(name, "boxes", spec, where, categories, reader=_reader(spec, where))
        else:
            raise InputError(f"{where}: kind {spec.get('kind')!r} is not labels or boxes")
        missing = sorted(set(EXPRESSIONS[name]) - set(source.categories))
        if missing:
            raise InputError(f"{where}: the config has no category {missing} (EXPRESSIONS asks for it)")
        out.append(source)
    return out


def validation_images(source: Source, limit: int | None = None) -> list[SceneRef]:
    """The source's validation images (the builder's split), the first ``limit`` of them."""
    from training.builder.combined import _files

    root, files = _files(source.spec, source.where, None)
    if source.kind == "labels":
        if not source.spec.get("gsd_m"):
            raise InputError(f"{source.where}: a labels source needs 'gsd_m' (the scenes are written at it)")
        gsd = {path: float(source.spec["gsd_m"]) for path, _ in files}
    else:
        gsd = box_gsd(source, files)
    val = [SceneRef(source.name, p, p.relative_to(root).as_posix(), gsd[p]) for p, split in files if split == "val"]
    if not val:
        raise InputError(f"{source.where}: no image of source {source.name!r} is in the 'val' split")
    return val[:limit] if limit else val


def box_gsd(source: Source, files: list[tuple[Path, str]]) -> dict[Path, float]:
    """Each image's GSD as the builder estimates it: over *all* the source's images (every split,
    no limit), per ``gsd`` series, from the median length of the reference class's boxes."""
    from PIL import Image

    from training.builder.combined import _label_path, _series_gsd

    records = []
    for path, split in files:
        with Image.open(path) as im:
            size = im.size
        records.append((path, split, source.reader(_label_path(source.spec, path), path, *size), size))
    return _series_gsd(source.spec, records, source.where)


# ------------------------------------------------------------------------------- targets
def read_truth(source: Source, ref: SceneRef) -> Truth:
    """The image and its target per category of :data:`EXPRESSIONS`, decoded as the builder does."""
    return _label_truth(source, ref) if source.kind == "labels" else _box_truth(source, ref)


def target_categories(source: Source) -> list[str]:
    """The categories scored for ``source`` and those (that it has) they must not be confused with."""
    scored = EXPRESSIONS[source.name]
    confused = [c for c in CONFUSED_WITH.get(source.name, {}).values() if c not in scored and c in source.categories]
    return list(scored) + list(dict.fromkeys(confused))


def _label_truth(source: Source, ref: SceneRef) -> Truth:
    from training.builder.combined import _label_path
    from training.builder.scenes import SceneSpec, inspect_scene, open_image, read_class_map, read_rgb
    from training.builder.tiling import CropWindow

    spec = SceneSpec(ref.path, _label_path(source.spec, ref.path), "val", gsd_m=ref.gsd_m)
    info = inspect_scene(spec, source.classes)
    class_map = read_class_map(info, source.classes)
    with open_image(info) as src:
        rgb = read_rgb(src, info, CropWindow(0, 0, info.height, info.width))
    index = source.classes.class_index()
    targets = {c: np.isin(class_map, [index[k] for k in source.categories[c]]) for c in target_categories(source)}
    return Truth(rgb, class_map != 0, targets)


def _box_truth(source: Source, ref: SceneRef) -> Truth:
    from PIL import Image

    from training.builder.boxmask import instance_masks
    from training.builder.combined import _label_path

    with Image.open(ref.path) as im:
        rgb = np.asarray(im.convert("RGB"))
    height, width = rgb.shape[:2]
    boxes = source.reader(_label_path(source.spec, ref.path), ref.path, width, height)
    labels = instance_masks(boxes, rgb, source.spec.get("box_mask", "oriented"))
    targets = {}
    for category in target_categories(source):
        ids = [i + 1 for i, b in enumerate(boxes) if b.cls in source.categories[category]]
        targets[category] = np.isin(labels, ids)
    return Truth(rgb, None, targets)


# ------------------------------------------------------------------------------- write, predict
def write_scene(path: Path, rgb: np.ndarray, epsg: int, gsd_m: float) -> Path:
    """``rgb`` (H, W, 3 uint8) as a lossless GeoTIFF, north-up at ``gsd_m`` from :data:`ORIGIN`."""
    import rasterio
    from rasterio.crs import CRS
    from rasterio.transform import Affine

    height, width = rgb.shape[:2]
    profile = {"driver": "GTiff", "dtype": "uint8", "count": 3, "height": height, "width": width,
               "crs": CRS.from_epsg(epsg), "transform": Affine.translation(*ORIGIN) @ Affine.scale(gsd_m, -gsd_m),
               "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.moveaxis(rgb, -1, 0))
    return path


def predict_masks(scene: Path, texts: list[str], segmenter: Any, folder: Path, tta: bool = False) -> dict[str, np.ndarray]:
    """Run :func:`rrsis_geo.predict` on ``scene``; each expression's mask (True = target)."""
    import rasterio

    import rrsis_geo

    mask_path = folder / "mask.tif"
    rrsis_geo.predict(scene, texts, segmenter=segmenter, mask_out=mask_path, output=folder / "polygons.gpkg", tta=tta)
    with rasterio.open(mask_path) as src:
        return {src.descriptions[i]: src.read(i + 1) == 1 for i in range(src.count)}


# ------------------------------------------------------------------------------- score
def iou(pred: np.ndarray, target: np.ndarray, valid: np.ndarray | None) -> float:
    """Intersection over union of two masks over the valid pixels (target non-empty)."""
    if valid is not None:
        pred, target = pred & valid, target & valid
    union = np.count_nonzero(pred | target)
    return float(np.count_nonzero(pred & target) / union) if union else 0.0


def counts(pred: np.ndarray, target: np.ndarray, valid: np.ndarray | None) -> dict[str, int]:
    """True positive, false positive and false negative pixels over the valid pixels."""
    if valid is not None:
        pred, target = pred & valid, target & valid
    return {"tp": int(np.count_nonzero(pred & target)), "fp": int(np.count_nonzero(pred & ~target)),
            "fn": int(np.count_nonzero(~pred & target))}


def score_image(source: str, truth: Truth, masks: dict[str, np.ndarray]) -> tuple[list[dict], list[str]]:
    """Rows ``{category, set, expression, iou, tp, fp, fn}`` (and the whole-image baseline) of one
    image, with ``confused`` (pixels of :data:`CONFUSED_WITH`'s category marked, and its area)
    where the source names one, and the categories skipped for an empty target."""
    rows: list[dict] = []
    skipped: list[str] = []
    everything = np.ones(truth.rgb.shape[:2], dtype=bool)
    for category, sets in EXPRESSIONS[source].items():
        target = truth.targets[category]
        if not np.count_nonzero(target if truth.valid is None else target & truth.valid):
            skipped.append(category)
            continue
        other = CONFUSED_WITH.get(source, {}).get(category)
        other = other if other in truth.targets else None
        for name in SETS:
            for text in sets[name]:
                row = {"category": category, "set": name, "expression": text,
                       "iou": iou(masks[text], target, truth.valid), **counts(masks[text], target, truth.valid)}
                if other is not None:
                    row["confused"] = [int(np.count_nonzero(masks[text] & truth.targets[other])),
                                       int(np.count_nonzero(truth.targets[other]))]
                rows.append(row)
        rows.append({"category": category, "set": BASELINE, "expression": None,
                     "iou": iou(everything, target, truth.valid), **counts(everything, target, truth.valid)})
    return rows, skipped


def expressions_of(source: str) -> list[str]:
    """Every expression of a source, words first."""
    return [t for sets in EXPRESSIONS[source].values() for name in SETS for t in sets[name]]


def evaluate_image(source: Source, ref: SceneRef, segmenter: Any, tta: bool = False) -> dict:
    """Write the scene, predict, score: the image's JSON record."""
    started = time.perf_counter()
    truth = read_truth(source, ref)
    with tempfile.TemporaryDirectory(prefix="rrsis-scene-") as tmp:
        scene = write_scene(Path(tmp) / f"{ref.path.stem}.tif", truth.rgb, EPSG[source.kind], ref.gsd_m)
        masks = predict_masks(scene, expressions_of(source.name), segmenter, Path(tmp), tta)
    rows, skipped = score_image(source.name, truth, masks)
    height, width = truth.rgb.shape[:2]
    return {"source": source.name, "image": ref.rel, "width": width, "height": height,
            "gsd_m": round(ref.gsd_m, 6), "scores": rows, "skipped": skipped,
            "seconds": round(time.perf_counter() - started, 1)}


# ------------------------------------------------------------------------------- summarise
def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def summarise(source: str, images: list[dict]) -> dict:
    """Per category: mIoU (%) per set and of the baseline, images scored and skipped; per set the
    mean over categories; everyday/words; per expression its mIoU (%)."""
    categories = {}
    for category in EXPRESSIONS[source]:
        scored = [im for im in images if category not in im["skipped"]]
        entry: dict[str, Any] = {"images": len(scored), "skipped": len(images) - len(scored)}
        for name in (*SETS, BASELINE):
            rows = [r for im in scored for r in im["scores"] if r["category"] == category and r["set"] == name]
            per_image = [_mean([r["iou"] for r in im["scores"] if r["category"] == category and r["set"] == name])
                         for im in scored]
            entry[name] = _pct(_mean(per_image))
            entry[f"{name} precision"], entry[f"{name} recall"] = pooled_precision_recall(rows)
            confused = [r["confused"] for r in rows if "confused" in r]
            if confused and sum(area for _, area in confused):
                entry[f"{name} on {CONFUSED_WITH[source][category]}"] = _pct(
                    sum(m for m, _ in confused) / sum(area for _, area in confused))
        categories[category] = entry
    means = {name: _pct(_mean([c[name] / 100 for c in categories.values() if c[name] is not None]))
             for name in (*SETS, BASELINE)}
    ratio = round(means["everyday"] / means["words"], 3) if means["words"] and means["everyday"] is not None else None
    expressions = {}
    for text in expressions_of(source):
        values = [r["iou"] for im in images for r in im["scores"] if r["expression"] == text]
        expressions[text] = {"mIoU": _pct(_mean(values)), "images": len(values)}
    return {"images": len(images), "categories": categories, "mean": means, "everyday_over_words": ratio,
            "expressions": expressions}


def pooled_precision_recall(rows: list[dict]) -> tuple[float | None, float | None]:
    """Precision and recall (%) of the pixels of all ``rows`` together (rows without counts: None)."""
    if not rows or any("tp" not in r for r in rows):
        return None, None
    tp, fp, fn = (sum(r[k] for r in rows) for k in ("tp", "fp", "fn"))
    return (_pct(tp / (tp + fp)) if tp + fp else None), (_pct(tp / (tp + fn)) if tp + fn else None)


def _pct(value: float | None) -> float | None:
    return None if value is None else round(100 * value, 2)


# ------------------------------------------------------------------------------- training phrases
def training_phrases(path: Path | None) -> set[str] | None:
    """The expressions of a builder's ``output_phrase_train.txt`` (``ID TEXT`` lines); None when
    the file is absent."""
    if path is None or not path.is_file():
        return None
    lines = path.read_text(encoding="utf-8").splitlines()
    return {" ".join(line.split()[1:]).lower() for line in lines if line.strip()}


def seen_in(text: str, phrases: set[str] | None) -> str:
    """``yes`` (a whole training expression), ``within`` (inside a longer one), ``no``, or ``?``."""
    if phrases is None:
        return "?"
    text = " ".join(text.lower().split())
    if text in phrases:
        return "yes"
    pattern = re.compile(rf"(^|\s){re.escape(text)}($|\s)")
    return "within" if any(pattern.search(p) for p in phrases) else "no"


# ------------------------------------------------------------------------------- report
def _cell(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def source_table(source: str, summary: dict) -> list[str]:
    """A source's Markdown table (rows: categories, then the mean) and its mean line."""
    n = summary["images"]
    lines = [f"### {source} ({n} validation image{'' if n == 1 else 's'})", "",
             "| category | words | everyday | whole image | words: precision | recall | everyday: precision | recall "
             "| images | skipped (empty target) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for category, c in summary["categories"].items():
        lines.append(f"| {category} | {_cell(c['words'])} | {_cell(c['everyday'])} | {_cell(c[BASELINE])} "
                     f"| {_cell(c.get('words precision'))} | {_cell(c.get('words recall'))} "
                     f"| {_cell(c.get('everyday precision'))} | {_cell(c.get('everyday recall'))} "
                     f"| {c['images']} | {c['skipped']} |")
    m = summary["mean"]
    lines.append(f"| **mean** | {_cell(m['words'])} | {_cell(m['everyday'])} | {_cell(m[BASELINE])} | | | | | | |")
    confusions = [f"'{category}' ({key.split(' on ')[0]}) marks {value:.1f} % of the {key.split(' on ')[1]} pixels"
                  for category, c in summary["categories"].items() for key, value in c.items()
                  if " on " in key and value is not None]
    if confusions:
        lines += ["", "; ".join(confusions) + "."]
    ratio = summary["everyday_over_words"]
    lines += ["", f"{MEAN_LABEL.get(source, source + ' mIoU')}: words {_cell(m['words'])}, everyday "
              f"{_cell(m['everyday'])}, whole image {_cell(m[BASELINE])}; everyday/words "
              f"{'—' if ratio is None else f'{ratio:.2f}'}", ""]
    return lines


def expression_table(source: str, summary: dict, phrases: set[str] | None) -> list[str]:
    """Per expression: its set, category, mIoU and whether the builder trained on it."""
    lines = ["| expression | set | category | mIoU | in training expressions |", "| --- | --- | --- | ---: | --- |"]
    for category, sets in EXPRESSIONS[source].items():
        for name in SETS:
            for text in sets[name]:
                value = summary["expressions"][text]["mIoU"]
                lines.append(f"| {text} | {name} | {category} | {_cell(value)} | {seen_in(text, phrases)} |")
    return lines + [""]


def report(result: dict, phrases: set[str] | None) -> str:
    """The whole Markdown report."""
    lines = [f"## Whole-scene evaluation: {result['model']}", "",
             f"Checkpoint `{result['checkpoint']}`, config `{result['config']}`, device {result['device']}"
             f"{' with test-time flips (--tta)' if result.get('tta') else ''}, "
             f"{result['seconds']:.0f} s. mIoU in % (mean over images of the per-image IoU); "
             "'whole image': every valid pixel predicted.", ""]
    for source, summary in result["sources"].items():
        lines += source_table(source, summary) + expression_table(source, summary, phrases)
    note = (f"'in training expressions': as a whole expression (yes), inside a longer one (within), "
            f"or not at all (no) in `{result['train_phrases']}`" if phrases is not None else
            f"'in training expressions': ? (no training phrase file at `{result['train_phrases']}`)")
    return "\n".join(lines + [note, ""])


def write_atomic(path: Path, text: str) -> None:
    """Write beside ``path`` and rename into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# ------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="combined builder config")
    parser.add_argument("--checkpoint", default=None, help="checkpoint directory (default: rrsis_geo's default)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    parser.add_argument("--sources", nargs="+", default=list(EXPRESSIONS), help="sources to score (default: all)")
    parser.add_argument("--limit", type=int, default=None, help="first N validation images per source")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--tta", action="store_true", help="predict with test-time flips (predict's --tta)")
    parser.add_argument("--train-phrases", type=Path, default=DEFAULT_PHRASES,
                        help="the builder's output_phrase_train.txt, to tell seen from unseen phrasings")
    parser.add_argument("--out", type=Path, help="write the Markdown report here")
    parser.add_argument("--json", type=Path, help="write the figures and per-image rows here")
    parser.add_argument("--overwrite", action="store_true", help="replace existing --out/--json files")
    parser.add_argument("--quiet", action="store_true", help="no per-image progress on stderr")
    return parser.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    """Refuse bad arguments before anything is loaded."""
    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit {args.limit} must be at least 1")
    if args.threads < 1:
        raise InputError(f"--threads {args.threads} must be at least 1")
    if not args.config.is_file():
        raise InputError(f"config {args.config} does not exist; pass --config with a combined builder config")
    for target in (args.out, args.json):
        if target is not None and target.exists() and not args.overwrite:
            raise OutputError(f"{target} exists; pass --overwrite to replace it")


def evaluate(args: argparse.Namespace, log: Log) -> dict:
    """Every validation image of every source asked for: the JSON result."""
    import torch

    from rrsis_geo.segmenter import load_model

    started = time.perf_counter()
    sources = load_sources(args.config, args.sources)
    refs = {s.name: validation_images(s, args.limit) for s in sources}  # every path checked before the model loads
    torch.set_num_threads(args.threads)
    segmenter = load_model(args.checkpoint, args.device)
    images = []
    for source in sources:
        for n, ref in enumerate(refs[source.name], start=1):
            images.append(evaluate_image(source, ref, segmenter, args.tta))
            log(f"{source.name} {n}/{len(refs[source.name])} {ref.rel}: {images[-1]['seconds']:.0f} s")
    return {"checkpoint": str(segmenter.checkpoint), "model": segmenter.name, "config": str(args.config),
            "device": str(segmenter.device), "tta": bool(args.tta), "train_phrases": str(args.train_phrases),
            "expressions": EXPRESSIONS,
            "sources": {s.name: summarise(s.name, [im for im in images if im["source"] == s.name]) for s in sources},
            "images": images, "seconds": round(time.perf_counter() - started, 1)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log: Log = (lambda _: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    try:
        check_args(args)
        result = evaluate(args, log)
    except RRSISError as exc:
        print(f"evaluate_scenes: error: {exc}", file=sys.stderr)
        return 2
    phrases = training_phrases(args.train_phrases)
    result["seen_in_training"] = {t: seen_in(t, phrases) for s in result["sources"] for t in expressions_of(s)}
    text = report(result, phrases)
    print(text)
    if args.out is not None:
        write_atomic(args.out, text)
    if args.json is not None:
        write_atomic(args.json, json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
