"""The ``rrsis-geo`` command: ``predict``, ``batch``, ``models``, ``info``.

Errors a user can cause are printed as ``rrsis-geo: error: <what to do>`` without a traceback
(exit status 2); Ctrl-C or a cancel leaves no partial output (exit status 130).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import List, Optional, Sequence

from .errors import InputError, RRSISError

PROG = "rrsis-geo"


# ------------------------------------------------------------------------------------------
# argument helpers
def read_expressions(args: argparse.Namespace) -> List[str]:
    expressions = list(args.expression or [])
    if args.expressions_file:
        path = Path(args.expressions_file)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise InputError(f"expressions file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read expressions file {path} ({exc}); it must be UTF-8 text, one expression per line") from exc
        expressions += [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
        if not expressions:
            raise InputError(f"expressions file {path} holds no expression (one per line; '#' starts a comment)")
    if not expressions:
        raise InputError("give an expression with -e 'building along the road' (or --expressions-file FILE)")
    return expressions


class _ProgressBar:
    """tqdm bar fed by the library's ``progress(done, total, message)`` callback."""

    def __init__(self, enabled: bool, unit: str = "tile") -> None:
        self.enabled = enabled
        self.unit = unit
        self.bar = None

    def __call__(self, done: int, total: int, message: str) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            if total <= 0:
                return
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit=self.unit, file=sys.stderr, dynamic_ncols=True, leave=True)
        if total > 0 and self.bar.total != total:
            self.bar.total = total
        if done > self.bar.n:
            self.bar.update(done - self.bar.n)
        if ": tile " in message:  # "scene 1/2 a.tif: tile 7/40": show which scene
            self.bar.set_postfix_str(message.split(": tile ")[0][:40], refresh=False)
        elif not message.startswith("tile "):
            self.bar.set_postfix_str(message[:40], refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


# ------------------------------------------------------------------------------------------
# commands
def _options_from(args: argparse.Namespace):
    from .options import from_arguments

    return from_arguments(args)


def _scale_text(gsd_m: Optional[float]) -> str:
    return f"runs at {gsd_m:g} m/px" if gsd_m else "runs at the scene's GSD"


def say_plan(plan) -> None:
    """Print how each expression is understood (stdout) or a warning (stderr), before the run."""
    from .calibration import calibration_text

    for e in plan.expressions:
        calibrated = calibration_text(e.explanation.categories, e.calibration_offset, plan.marked_from(e))
        line = f"{e.explanation.message}; {_scale_text(e.gsd_m)}{calibrated}"
        if e.explanation.known:
            print(line)
        else:
            print(f"{PROG}: warning: {line}", file=sys.stderr)
    sys.stdout.flush()


def cmd_predict(args: argparse.Namespace) -> int:
    expressions = read_expressions(args)
    if args.output is None and args.prob_out is None and args.mask_out is None:
        raise InputError("say where to write the result: -o OUT.gpkg (and/or --prob-out P.tif, --mask-out M.tif)")
    from .pipeline import predict  # no torch yet: a coarse scene is refused before the model loads

    options = _options_from(args)
    bar = _ProgressBar(not args.quiet)
    try:
        result = predict(
            args.scenes if len(args.scenes) > 1 else args.scenes[0],
            expressions,
            options,
            progress=bar,
            on_plan=None if args.quiet else say_plan,
        )
    finally:
        bar.close()
    counts = result["expression"].value_counts() if len(result) else {}
    from .pipeline import SCENE_PLACEHOLDER, clean_expressions
    from .vectorize import layer_names

    texts = clean_expressions(expressions)
    for text, layer in zip(texts, layer_names(texts)):
        n = int(counts.get(text, 0)) if len(result) else 0
        where = f" (layer {layer})" if args.output else ""
        print(f"{text}: {n} polygon{'s' if n != 1 else ''}{where}")
    for path in (args.output, args.prob_out, args.mask_out):
        if path is not None and SCENE_PLACEHOLDER not in str(path):
            print(f"wrote {Path(path).resolve()}")
        elif path is not None:
            print(f"wrote {path} (one file per scene)")
    return 0


def _knowledge_lines(checkpoint: Path, verbose: bool = False) -> List[str]:
    from .checkpoint_config import CheckpointConfig
    from .knowledge import describe_knowledge

    try:
        return describe_knowledge(CheckpointConfig.read(checkpoint).knowledge, verbose)
    except RRSISError:
        return []  # the description line already says why the checkpoint is unusable


def cmd_models(args: argparse.Namespace) -> int:
    from .catalog import download_checkpoint, list_checkpoints, user_model_dir

    if args.download:
        bar = _ProgressBar(not args.quiet, unit="B")
        try:
            path = download_checkpoint(args.download, overwrite=args.overwrite, progress=bar)
        finally:
            bar.close()
        print(f"installed {args.download} in {path}; use it with --checkpoint {args.download}")
        return 0
    entries = list_checkpoints()
    installed = [e for e in entries if e.where in ("default", "user")]
    available = [e for e in entries if e.where in ("download", "installed")]
    print(f"user model directory: {user_model_dir()}")
    if installed:
        print("installed:")
        for e in installed:
            mark = " (default)" if e.default else ""
            print(f"  {e.name}{mark}  {e.location}\n      {e.description}")
            for line in _knowledge_lines(Path(e.location), args.verbose):
                print(f"      {line}")
    else:
        print("installed: none (pass --checkpoint DIR, set RRSIS_CHECKPOINT, or download one below)")
    if available:
        print("downloadable (rrsis-geo models --download NAME):")
        for e in available:
            state = " [installed]" if e.where == "installed" else ""
            print(f"  {e.name}{state}  {e.location}  sha256 {e.sha256[:16]}...\n      {e.description}")
    else:
        print("downloadable: none listed (set RRSIS_MANIFEST to a manifest file to add some)")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import rasterio

    from .catalog import default_checkpoint, resolve_checkpoint
    from .grid import plan_tiles
    from .checkpoint_config import DEFAULT_INPUT_SIZE, CheckpointConfig
    from .raster import band_summary, open_raster, scene_bounds

    options = _options_from(args)  # the same checks as predict's
    bands = options.bands
    scene = Path(args.scene)
    if bands is None and scene.is_file():
        try:
            with rasterio.open(scene) as ds:
                if ds.count < 3:
                    bands = [1, 1, 1]
        except rasterio.errors.RasterioIOError:
            pass  # open_raster says what is wrong
    source = open_raster(scene, bands=bands, bbox=options.bbox, allow_no_crs=True)
    config = None
    checkpoint = None
    if args.checkpoint or default_checkpoint() is not None:
        checkpoint = resolve_checkpoint(args.checkpoint)
        config = CheckpointConfig.read(checkpoint)
    tile = int(args.tile_size or (config.input_size if config else DEFAULT_INPUT_SIZE))
    gsd_m = config.gsd_m if config else None
    plan = plan_tiles(source, tile, args.overlap, model_gsd=gsd_m, resample=False if gsd_m is None else None)

    r = source.region
    out = [
        f"scene:        {source.path}",
        f"driver:       {source.driver}",
        f"size:         {source.width} x {source.height} px ({source.width * source.height / 1e6:.2f} MP), {source.count} band(s)",
    ]
    out += [f"{'bands:' if k == 0 else '':14}{line}" for k, line in enumerate(band_summary(source))]
    out.append(f"dtype:        {source.dtype}")
    if source.stretch and source.dtype != "uint8":
        spans = ", ".join(f"{lo:.6g}..{hi:.6g}" for lo, hi in source.stretch)
        out.append(f"stretch:      2-98 % per band: {spans}")
    else:
        out.append("stretch:      8-bit, used as is")
    out.append(f"crs:          {source.describe_crs()}" + ("" if source.crs else "  (predict needs --allow-no-crs)"))
    minx, miny, maxx, maxy = scene_bounds(source)
    out.append(f"bounds:       {minx:.6f}, {miny:.6f}, {maxx:.6f}, {maxy:.6f}")
    if source.gsd:
        out.append(f"gsd:          {source.gsd[0]:.4g} x {source.gsd[1]:.4g} m/px")
    else:
        out.append("gsd:          unknown (no CRS)")
    out.append(f"nodata:       {source.nodata}" + ("  (masked pixels present or possible)" if source.has_mask else ""))
    out.append(f"overviews:    {', '.join(map(str, source.overviews)) or 'none'}")
    if (r.width, r.height) != (source.width, source.height):
        out.append(f"bbox window:  col {r.col_off}, row {r.row_off}, {r.width} x {r.height} px")
    rows, cols = plan.grid.shape
    stride = plan.grid.strides
    out.append(
        f"tiles:        {len(plan.grid)} ({rows} x {cols}) of {tile} px, {args.overlap:.0%} overlap, stride {stride[1]} px"
    )
    if plan.resample:
        out.append(f"resampling:   to the model's {gsd_m} m/px (tile footprint {plan.footprint[1]} x {plan.footprint[0]} px)")
    if checkpoint is not None:
        out.append(f"model:        {config.display_name(checkpoint.name)} ({checkpoint})")
        lines = _knowledge_lines(checkpoint, args.verbose)
        out += [f"{'knows:' if k == 0 else '':14}{line}" for k, line in enumerate(lines)]
    if args.expression:
        out += _plan_lines(source, args, tile)
    print("\n".join(out))
    return 0


def _plan_lines(source, args: argparse.Namespace, tile: int) -> List[str]:
    """``info -e``: how each expression is read, its scale, and the passes over the scene."""
    from .errors import ScaleError
    from .pipeline import clean_expressions
    from .scaleplan import plan_expressions, plan_scene
    from .segmenter import load_model

    expressions = plan_expressions(load_model(args.checkpoint, "cpu"), clean_expressions(args.expression))
    lines = []
    for e in expressions:
        limit = f"; refused on scenes coarser than {e.coarsest_scene_m:g} m/px" if e.coarsest_scene_m else ""
        lines.append(f"expression:   {e.explanation.message}")
        lines.append(f"{'':14}{_scale_text(e.gsd_m)}{limit}")
    try:
        plan = plan_scene(source, expressions, tile, args.overlap, force_gsd=args.force_gsd)
    except ScaleError as exc:
        return lines + [f"plan:         refused: {exc}"]
    for k, p in enumerate(plan.passes, start=1):
        fh, fw = p.tiles.footprint
        how = f"footprint {fw} x {fh} px, resampled" if p.tiles.resample else "scene pixels as they are"
        lines.append(
            f"{f'pass {k}:':14}{_scale_text(p.gsd_m)}: {len(p.tiles.grid)} tile{'s' if len(p.tiles.grid) != 1 else ''} "
            f"({how}) for {', '.join(p.expressions)}"
        )
    return lines


# ------------------------------------------------------------------------------------------
def cmd_batch(args: argparse.Namespace) -> int:
    from .batch import BatchSettings, Interrupted, run_batch

    expressions = read_expressions(args)
    options = _options_from(args)
    settings = BatchSettings(
        run_dir=Path(args.run_dir), workers=args.workers, cluster=args.cluster, fail_fast=args.fail_fast,
        asset=args.asset, formats=tuple(args.format or ()), progress=not args.quiet,
    )
    try:
        summary = run_batch(args.sources, expressions, options, settings, say=lambda text: print(f"{PROG}: {text}"))
    except Interrupted:
        print(f"{PROG}: interrupted; finished scenes are recorded in {settings.run_dir}: run the same command to "
              "resume", file=sys.stderr)
        return 130
    print(batch_table(summary))
    if summary.output:
        print(f"wrote {summary.output}")
    if summary.failed:
        named = ", ".join(list(summary.failed)[:10]) + (", …" if len(summary.failed) > 10 else "")
        print(f"{PROG}: error: {len(summary.failed)} scene(s) failed: {named} (reasons above and in "
              f"{Path(settings.run_dir) / 'summary.json'}; run the same command to retry them)", file=sys.stderr)
        return 2
    if summary.pending:
        print(f"{PROG}: error: {summary.pending} scene(s) not run (--fail-fast); run the same command to go on",
              file=sys.stderr)
        return 2
    return 0


def batch_table(summary) -> str:
    """The summary of a batch run as the command prints it."""
    rate = summary.tiles / summary.seconds if summary.seconds else 0.0
    lines = [
        f"scenes: {summary.scenes} | done now: {summary.done} | done before: {summary.resumed} | "
        f"failed: {len(summary.failed)} | not run: {summary.pending}",
        f"tiles: {summary.tiles} in {summary.seconds:.1f} s ({rate:.1f} tiles/s) on {summary.workers} worker(s)",
    ]
    lines += [f"  {expression}: {count} polygon(s)" for expression, count in summary.counts.items()]
    lines += [f"  failed {label}: {reason}" for label, reason in summary.failed.items()]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Segment what an English expression describes in a georeferenced raster; write polygons.",
    )
    from . import __version__

    from .options import add_arguments

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("predict", help="segment expressions in scenes and write a GeoPackage",
                       description="Segment expressions in scenes; one GeoPackage layer per expression.")
    p.add_argument("scenes", nargs="+", metavar="SCENE", help="raster file(s) GDAL can read")
    p.add_argument("-e", "--expression", action="append", metavar="EXPR", help="referring expression (repeat for several)")
    p.add_argument("--expressions-file", metavar="F", help="text file, one expression per line ('#' comments)")
    add_arguments(p)  # every prediction option, from the one schema (rrsis_geo.options)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no 'understood as' lines")
    p.set_defaults(func=cmd_predict)

    b = sub.add_parser("batch", help="run expressions over many scenes on a Dask cluster; resumable; one merged result",
                       description="Run expressions over a collection of scenes on a distributed engine (Dask): "
                                   "each scene's polygons are recorded in the run directory as they arrive, a re-run "
                                   "resumes, and the parts are merged into one GeoPackage.")
    b.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="scenes: files, globs ('tiles/*.tif'), URLs, a .txt list of paths/URLs, a VRT, a STAC JSON")
    b.add_argument("-e", "--expression", action="append", metavar="EXPR", help="referring expression (repeat for several)")
    b.add_argument("--expressions-file", metavar="F", help="text file, one expression per line ('#' comments)")
    b.add_argument("--run-dir", required=True, metavar="DIR", help="where each scene's state and part are kept (resume)")
    b.add_argument("--workers", type=int, metavar="N", help="local worker processes (default: one per GPU, else one)")
    b.add_argument("--cluster", metavar="ADDRESS", help="use this Dask scheduler (tcp://host:8786) instead of local workers")
    b.add_argument("--fail-fast", action="store_true", help="stop at the first failed scene (default: record it, go on)")
    b.add_argument("--asset", metavar="KEY", help="STAC asset to segment (default: the first GeoTIFF asset)")
    b.add_argument("--format", action="append", choices=("fgb", "parquet"),
                   help="also write the merged polygons as FlatGeobuf / GeoParquet beside the GeoPackage")
    add_arguments(b, [n for n in _option_names() if n not in ("prob_out", "mask_out")])  # predict's options
    b.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=cmd_batch)

    m = sub.add_parser("models", help="list installed and downloadable checkpoints; download one")
    m.add_argument("--download", metavar="NAME", help="fetch a listed checkpoint (sha256-verified) into the user model dir")
    m.add_argument("--overwrite", action="store_true", help="replace an installed checkpoint of that name")
    m.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    m.add_argument("-v", "--verbose", action="store_true", help="list every known phrasing (default: a summary)")
    m.set_defaults(func=cmd_models)

    i = sub.add_parser("info", help="what the library sees in a scene (size, bands, CRS, GSD, tiles)")
    i.add_argument("scene", metavar="SCENE")
    add_arguments(i, ("checkpoint", "tile_size", "overlap", "bands", "bbox", "force_gsd"))  # as predict's
    i.add_argument("-e", "--expression", action="append", metavar="EXPR",
                   help="show how this expression is read and the scale it runs at (repeat for several)")
    i.add_argument("-v", "--verbose", action="store_true", help="list every known phrasing (default: a summary)")
    i.set_defaults(func=cmd_info)
    return parser


def _option_names() -> List[str]:
    from .options import CLI, specs

    return [s.name for s in specs(CLI)]


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``rrsis-geo`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status.

    OpenMP keeps its default wait policy (spin briefly, then sleep; less when oversubscribed):
    measured on 2 idle cores (scripts/bench_pipeline.py, default model, 2048 px), the pipeline
    runs 32.6 tiles/s with it against 21.3 with ``OMP_WAIT_POLICY=PASSIVE``; with another busy
    process on the machine 10.6 against 17.1. Set ``OMP_WAIT_POLICY=PASSIVE`` on a shared machine;
    the QGIS worker does (:mod:`rrsis_qgis`), next to the desktop.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    with warnings.catch_warnings():  # restores the warning machinery afterwards
        warnings.simplefilter("default", UserWarning)
        try:  # a scene without a CRS is reported by our own error (or accepted by --allow-no-crs)
            from rasterio.errors import NotGeoreferencedWarning

            warnings.simplefilter("ignore", NotGeoreferencedWarning)
        except ImportError:  # pragma: no cover
            pass
        warnings.showwarning = _show_warning
        try:
            return int(args.func(args) or 0)
        except RRSISError as exc:
            from .options import CLI, describe

            print(f"{PROG}: error: {describe(exc, CLI)}", file=sys.stderr)
            return int(getattr(exc, "exit_code", 2))
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted; no output was written", file=sys.stderr)
            return 130
        except OSError as exc:  # a file-system or GDAL fault the library did not name: still one line
            print(f"{PROG}: error: {' '.join(str(exc).split())}", file=sys.stderr)
            return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
