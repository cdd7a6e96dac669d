"""``python -m training.builder``: build a RefSegRS-style dataset from semantic label rasters.

One scene, split by region (spatial blocks shared out to train/val/test)::

    python -m training.builder --image scene.tif --labels labels.tif \\
        --classes training/builder/configs/skyscapes.yaml --out DIR

Several scenes, each wholly in one split (``split: region`` splits that scene by blocks)::

    python -m training.builder --scenes scenes.yaml --classes classes.yaml --out DIR
    python -m training.builder --scene a.tif a_lab.tif train --scene b.tif b_lab.tif val ...

``scenes.yaml``: ``scenes: [{image, labels, split, name (optional), gsd (optional)}, ...]``;
relative paths are relative to the scenes file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from rrsis_geo.errors import InputError, RRSISError
from training.builder.build import build_dataset
from training.builder.config import CONFIG_DIR, SPLITS, load_config
from training.builder.scenes import REGION, SceneSpec


def load_scenes(path: str | Path) -> list[SceneSpec]:
    """Read a scenes file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"scenes file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InputError(f"{path} is not valid YAML: {exc}") from exc
    entries = data.get("scenes") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise InputError(f"{path}: expected 'scenes:' with a list of {{image, labels, split}}")
    specs = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not {"image", "labels", "split"} <= set(entry):
            raise InputError(f"{path}: scenes[{i}] needs 'image', 'labels' and 'split'")
        unknown = set(entry) - {"image", "labels", "split", "name", "gsd"}
        if unknown:
            raise InputError(f"{path}: scenes[{i}] has unknown key(s) {sorted(unknown)}")
        gsd = entry.get("gsd")
        if gsd is not None and (not isinstance(gsd, (int, float)) or gsd <= 0):
            raise InputError(f"{path}: scenes[{i}].gsd must be a pixel size in metres > 0")
        specs.append(SceneSpec(image=(path.parent / entry["image"]),
                               labels=(path.parent / entry["labels"]), split=str(entry["split"]),
                               name=entry.get("name"), gsd_m=None if gsd is None else float(gsd)))
    return specs


def _fractions(text: str) -> dict[str, float]:
    try:
        pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
        fractions = {k.strip(): float(v) for k, v in pairs}
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected e.g. train=0.7,val=0.15,test=0.15, got {text!r}") from exc
    if not fractions or set(fractions) - set(SPLITS):
        raise argparse.ArgumentTypeError(f"splits must be among {', '.join(SPLITS)}")
    return fractions


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.builder",
        description="Build a RefSegRS-style referring segmentation dataset (images, masks, "
                    "output_phrase_{split}.txt, crops.json, stats.json) from semantic label rasters.")
    src = parser.add_argument_group("scenes (one of)")
    src.add_argument("--image", type=Path, help="image raster of a single scene")
    src.add_argument("--labels", type=Path, help="label raster of that scene (same grid)")
    src.add_argument("--split", choices=[*SPLITS, REGION], default=REGION,
                     help="split of the single scene (default: region = split by spatial blocks)")
    src.add_argument("--scene", nargs=3, action="append", metavar=("IMAGE", "LABELS", "SPLIT"),
                     help="a scene wholly in SPLIT (train, val, test or region); repeatable")
    src.add_argument("--scenes", type=Path, help="YAML file listing scenes (image, labels, split)")
    src.add_argument("--config", type=Path,
                     help="a combined config listing several sources (label rasters and box-labelled "
                          "images) phrased through a paraphrase grammar, e.g. "
                          "training/builder/configs/combined.yaml; replaces the other scene options")
    parser.add_argument("--limit", type=int, help=argparse.SUPPRESS)  # images per source, quick looks
    parser.add_argument("--classes", type=Path, default=CONFIG_DIR / "skyscapes.yaml",
                        help="class mapping and vocabulary (default: the paper's SkyScapes mapping, "
                             "%(default)s; see training/builder/configs/)")
    parser.add_argument("--out", type=Path, required=True, help="output dataset folder")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--gsd", type=float, help="pixel size in metres (required without a CRS; "
                                                  "overrides the CRS-derived value)")
    tiling = parser.add_argument_group("tiling (override classes.yaml)")
    tiling.add_argument("--window", type=int, help="crop window in source pixels")
    tiling.add_argument("--stride", type=int, help="stride between windows in source pixels")
    tiling.add_argument("--output-size", type=int, help="side of the written images in pixels")
    region = parser.add_argument_group("region split (override classes.yaml)")
    region.add_argument("--block-size", type=int, help="region block side in source pixels")
    region.add_argument("--fractions", type=_fractions, help="e.g. train=0.7,val=0.15,test=0.15")
    region.add_argument("--seed", type=int, help="seed of the block shuffle")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _scenes_from_args(args: argparse.Namespace) -> list[SceneSpec]:
    given = sum(x is not None for x in (args.image or args.labels or None, args.scene, args.scenes))
    if given != 1:
        raise InputError("give exactly one of --image/--labels, --scene (repeatable) or --scenes")
    if args.scenes is not None:
        return load_scenes(args.scenes)
    if args.scene is not None:
        return [SceneSpec(Path(i), Path(lab), split) for i, lab, split in args.scene]
    if args.image is None or args.labels is None:
        raise InputError("--image and --labels go together")
    return [SceneSpec(args.image, args.labels, args.split)]


def _progress_bar(quiet: bool):
    if quiet:
        return None, None
    from tqdm import tqdm

    bar = tqdm(total=0, unit="crop", file=sys.stderr, leave=False)

    def report(done: int, total: int, message: str) -> None:
        bar.total = total
        bar.set_description(message)
        bar.update(done - bar.n)

    return report, bar


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry; returns the exit status (0, or 2 for unusable input)."""
    args = build_parser().parse_args(argv)
    bar = None
    try:
        if args.config is not None:
            if any(x is not None for x in (args.image, args.labels, args.scene, args.scenes)):
                raise InputError("--config lists its own sources; drop --image/--labels/--scene/--scenes")
            return _combined(args)
        config = load_config(args.classes)
        config = config.with_tiling(args.window, args.stride, args.output_size)
        config = config.with_split(args.fractions, args.block_size, args.seed)
        scenes = _scenes_from_args(args)
        report, bar = _progress_bar(args.quiet)
        stats = build_dataset(scenes, config, args.out, overwrite=args.overwrite, gsd_m=args.gsd,
                              progress=report)
    except RRSISError as exc:
        if bar is not None:
            bar.close()
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if bar is not None:
        bar.close()
    print(_summary(args.out, stats))
    return 0


def _combined(args: argparse.Namespace) -> int:
    from training.builder.combined import build_combined

    report, bar = _progress_bar(args.quiet)
    try:
        stats = build_combined(args.config, args.out, overwrite=args.overwrite, progress=report,
                               limit=args.limit)
    finally:
        if bar is not None:
            bar.close()
    print(combined_summary(args.out, stats))
    return 0


def combined_summary(out: Path, stats: dict) -> str:
    """The stats table of a combined build (Markdown)."""
    splits = list(stats["splits"])
    lines = [f"wrote {stats['totals']['triplets']} triplets from {stats['totals']['crops']} crops of "
             f"{stats['totals']['scenes']} images to {out} in {stats['seconds']} s", ""]
    for title, key in (("split", None), ("source", "per_source"), ("phrasing", "per_phrasing"),
                       ("source / phrasing", "per_source_phrasing"), ("category", "per_category"),
                       ("template", "per_template")):
        lines += [f"| {title} | " + " | ".join(splits) + " |", "|---|" + "---:|" * len(splits)]
        if key is None:
            rows = {s: {s: stats["splits"][s]["triplets"]} for s in splits}
        else:
            rows = stats[key]
        for name, counts in rows.items():
            lines.append(f"| {name} | " + " | ".join(str(counts.get(s, 0)) for s in splits) + " |")
        lines.append("")
    return "\n".join(lines)


def _summary(out: Path, stats: dict) -> str:
    lines = [f"wrote {stats['totals']['triplets']} triplets from {stats['totals']['crops']} crops "
             f"of {stats['totals']['scenes']} scene(s) to {out} in {stats['seconds']} s"]
    for split, row in stats["splits"].items():
        lines.append(f"  {split:5s} {row['triplets']:6d} triplets  {row['crops']:5d} crops  "
                     f"{row['expressions']:4d} distinct expressions")
    templates = ", ".join(f"{t} {sum(c.values())}" for t, c in stats["per_template"].items())
    lines.append(f"  templates: {templates}")
    dropped = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in stats["dropped"].items() if v)
    if dropped:
        lines.append(f"  dropped: {dropped}")
    return "\n".join(lines)
