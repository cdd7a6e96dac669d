"""``predict``: scenes + expressions -> polygons (and optional GeoPackage / GeoTIFF outputs).

Everything a user can get wrong is checked before the first tile is read (outputs, scenes, bands,
bbox, numbers, expressions, checkpoint); outputs are written to temporary files beside their
destinations and renamed together at the very end, so an error, a cancel or Ctrl-C leaves
nothing behind and never touches an existing file.

Several scenes (``predict([a, b], ...)``) give one result: every expression's features from all
scenes, with a ``scene`` column; scenes in different CRSs need ``crs`` (the output's CRS, every
scene's polygons reprojected into it), else they are refused. ``prob_out``/``mask_out`` then need a ``{scene}`` placeholder (replaced by
the scene's file stem), one GeoTIFF per scene. Several expressions give one band each in those
GeoTIFFs (the expression is the band description) and one GeoPackage layer each.

Each expression runs at its own scale (:mod:`.scaleplan`): the way from arguments to GeoPackage
is check (options, outputs, scenes opened once, coarse scenes refused before the model loads,
then the model) -> plan (per expression a scale, per scene one pass per scale) -> run (per scene,
per pass) -> write. Importing this module loads no torch: a refusal costs no model stack.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from .cpu import usable_cores
from .errors import Cancelled, Fix, InputError, RasterError, VocabularyError
from .io_utils import OutputTransaction, check_free_space, temp_path_beside
from .raster import RasterSource, open_raster
from .rasterout import GeoTiffStripWriter, geotiff_bytes
from .options import PredictOptions
from .read_faults import format_windows
from .scaleplan import ExpressionPlan, ScalePass, ScenePlan, check_coarse_early, plan_expressions, plan_scene
from .vectorize import AreaMeter, PolygonAssembler, PolygonSink, VectorOptions, layer_names, write_geopackage

if TYPE_CHECKING:  # pragma: no cover - the model stack (torch) loads only once a run needs it
    from .engine import EngineOptions
    from .segmenter import EncodedText, Segmenter

PathLike = Union[str, "os.PathLike[str]"]
ProgressFn = Callable[[int, int, str], None]

SCENE_PLACEHOLDER = "{scene}"


def clean_expressions(expressions: Union[str, Sequence[str]]) -> List[str]:
    """Whitespace-normalised, de-duplicated expressions; an empty one is an error."""
    from .models.tokenizer import clean_expression

    if isinstance(expressions, str):
        expressions = [expressions]
    cleaned: List[str] = []
    for expression in expressions:
        text = clean_expression(expression)
        if text not in cleaned:
            cleaned.append(text)
    if not cleaned:
        from .errors import ExpressionError

        raise ExpressionError("give at least one referring expression, e.g. -e 'building along the road'")
    return cleaned


def _scene_list(scene: Union[PathLike, Sequence[PathLike]]) -> List[Path]:
    if isinstance(scene, (str, os.PathLike)):
        return [Path(scene)]
    scenes = [Path(s) for s in scene]
    if not scenes:
        raise InputError("give at least one scene")
    return scenes


def _scene_labels(scenes: Sequence[Path]) -> List[str]:
    names = [s.name for s in scenes]
    if len(set(names)) == len(names):
        return names
    return [str(s) for s in scenes]


def _per_scene_paths(pattern: Optional[PathLike], scenes: Sequence[Path], option: str) -> List[Optional[Path]]:
    if pattern is None:
        return [None] * len(scenes)
    text = str(pattern)
    if len(scenes) == 1:
        return [Path(text.replace(SCENE_PLACEHOLDER, scenes[0].stem))]
    if SCENE_PLACEHOLDER not in text:
        raise InputError(
            f"{option} {text} names one file but {len(scenes)} scenes were given; put {SCENE_PLACEHOLDER} in "
            f"the name for one file per scene, e.g. {option} out/{SCENE_PLACEHOLDER}_{'prob' if 'prob' in option else 'mask'}.tif"
        )
    paths = [Path(text.replace(SCENE_PLACEHOLDER, s.stem)) for s in scenes]
    if len(set(paths)) != len(paths):
        raise InputError(f"{option}: several scenes share a file stem, so {SCENE_PLACEHOLDER} does not tell their outputs apart")
    return paths


def _default_batch_size(segmenter: "Segmenter") -> int:
    """The checkpoint's, else per device from measurements (scripts/bench_forward_settings.py,
    channels-last, 2 CPU cores: the default's forward runs 33.5 tiles/s in fp32 at batch 4 against
    31.8 at 8, 35.4 in bf16 at batch 8 against 32.4 at 4; bf16's 39.6 at batch 16 bare was
    slower in the pipeline, README)."""
    if segmenter.card.batch_size:
        return int(segmenter.card.batch_size)
    if segmenter.device.type == "cuda":
        return 16
    return 8 if segmenter.precision == "bf16" else 4


def _default_readers(segmenter: "Segmenter") -> int:
    if segmenter.device.type != "cuda":
        return 1  # the CPU cores are busy with the model
    return max(1, min(4, usable_cores() // 4))


@dataclass
class PredictionPlan:
    """What a run will do, known before any tile is read (``to_dict()`` for JSON)."""

    expressions: List[ExpressionPlan]
    scenes: List[ScenePlan]
    tile_size: int
    model: str
    device: str = "cpu"
    precision: str = "fp32"
    threshold: float = 0.5  # on the calibrated probability (rrsis_geo.calibration)
    tta: bool = False  # each tile also run flipped (4 model calls per tile)

    @property
    def tiles(self) -> int:
        return sum(s.tiles for s in self.scenes)

    def marked_from(self, expression: ExpressionPlan) -> float:
        """The model's own probability from which ``expression`` is marked: the threshold moved
        by its calibration offset."""
        from .calibration import raw_threshold

        return raw_threshold(self.threshold, expression.calibration_offset)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "model": self.model,
            "device": self.device,
            "precision": self.precision,
            "threshold": self.threshold,
            "tta": self.tta,
            "tile_size": self.tile_size,
            "expressions": [dict(e.to_dict(), marked_from=self.marked_from(e)) for e in self.expressions],
            "scenes": [s.to_dict() for s in self.scenes],
        }


@dataclass
class _Run:
    """What every pass of a run shares: callbacks, model, settings, running totals."""

    progress: Optional[ProgressFn]
    cancel: Any
    total: int = 0
    done: int = 0
    stats: List[Dict[str, Any]] = field(default_factory=list)
    segmenter: Any = None
    encoded: Sequence["EncodedText"] = ()
    engine: Optional["EngineOptions"] = None
    threshold: float = 0.5
    unread: List[Tuple[str, Any]] = field(default_factory=list)  # (scene label, window) not read ('skip')

    def report(self, message: str) -> None:
        if self.progress is not None:
            self.progress(self.done, self.total, message)

    def check_cancel(self) -> None:
        from .errors import cancel_requested

        if cancel_requested(self.cancel):
            raise Cancelled("cancelled by the user; nothing was written")


@dataclass
class _Targets:
    """Temporary paths of the outputs (renamed into place by the transaction)."""

    gpkg: Optional[Path]
    prob: List[Optional[Path]]
    mask: List[Optional[Path]]


# ------------------------------------------------------------------------------------------
# check
def _reserve_outputs(outputs: OutputTransaction, scenes: Sequence[Path], options: PredictOptions) -> _Targets:
    gpkg = outputs.add(options.output, what="output GeoPackage") if options.output is not None else None
    prob_targets = _per_scene_paths(options.prob_out, scenes, "--prob-out")
    mask_targets = _per_scene_paths(options.mask_out, scenes, "--mask-out")
    return _Targets(
        gpkg,
        [outputs.add(p, what="probability GeoTIFF") if p else None for p in prob_targets],
        [outputs.add(p, what="mask GeoTIFF") if p else None for p in mask_targets],
    )


def _open_scenes(scenes: Sequence[Path], options: PredictOptions) -> List[RasterSource]:
    sources = [
        open_raster(s, bands=options.bands, bbox=options.bbox, allow_no_crs=options.allow_no_crs, on_read_error=options.on_read_error)
        for s in scenes
    ]
    crs_known = [src.crs is not None for src in sources]
    if any(crs_known) and not all(crs_known):
        raise InputError("the scenes mix georeferenced rasters and rasters without a CRS; predict them separately")
    if not all(crs_known) and (options.min_area > 0 or options.fill_holes > 0):
        raise InputError("--min-area and --fill-holes are in m2 and need a scene with a CRS")
    if options.crs is None and len({src.crs.to_wkt() for src in sources if src.crs is not None}) > 1:
        named = ", ".join(f"{Path(src.path).name}: {_crs_name(src.crs)}" for src in sources)
        raise InputError(
            f"the scenes are in different CRSs ({named}) and one output has one CRS",
            fix=Fix("crs", example=_crs_name(sources[0].crs),
                    effect="to reproject every scene's polygons into it, or predict them separately"),
        )
    return sources


def _crs_name(crs: Any) -> str:
    """``EPSG:32640`` where the CRS has a code, else its name."""
    code = crs.to_epsg() if crs is not None else None
    return f"EPSG:{code}" if code else (crs.to_string() if crs is not None else "none")


def output_crs(sources: Sequence[RasterSource], options: PredictOptions) -> Any:
    """The CRS of the output: ``options.crs`` (checked), else the scenes' own."""
    if options.crs is None:
        return sources[0].crs
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    if not all(src.crs is not None for src in sources):
        raise InputError("--crs reprojects georeferenced scenes; these have no CRS (--allow-no-crs)")
    try:
        return CRS.from_user_input(options.crs)
    except CRSError as exc:
        raise InputError(f"--crs {options.crs!r} is not a CRS GDAL knows ({exc}); give e.g. EPSG:4326") from exc


# ------------------------------------------------------------------------------------------
# plan
def _checkpoint_knowledge(checkpoint: Optional[PathLike]):
    from .catalog import resolve_checkpoint
    from .checkpoint_config import CheckpointConfig

    return CheckpointConfig.read(resolve_checkpoint(checkpoint)).knowledge


def plan_prediction(
    sources: Sequence[RasterSource], texts: Sequence[str], segmenter: "Segmenter", options: PredictOptions
) -> PredictionPlan:
    """Per expression its scale, per scene its passes; refuses coarse scenes (:class:`ScaleError`)
    and, with ``strict_vocabulary``, unknown expressions (:class:`VocabularyError`)."""
    expressions = plan_expressions(segmenter, texts)
    if options.strict_vocabulary:
        for e in expressions:
            if not e.explanation.known:
                raise VocabularyError(f"{e.explanation.message} (refused by --strict-vocabulary)")
            if e.explanation.ignored:
                raise VocabularyError(
                    f"in '{e.explanation.expression}', {e.explanation.ignored_text.replace(' and was ignored', '').replace(' and were ignored', '')} "
                    "by this model (refused by --strict-vocabulary)"
                )
    tile = int(options.tile_size or segmenter.input_size)
    check_tile_fits(segmenter, tile, int(options.batch_size or _default_batch_size(segmenter)))
    scenes = [
        plan_scene(src, expressions, tile, options.overlap, resample=options.resample, force_gsd=options.force_gsd)
        for src in sources
    ]
    threshold = segmenter.threshold if options.threshold is None else float(options.threshold)
    return PredictionPlan(expressions, scenes, tile, segmenter.name, str(segmenter.device), segmenter.precision, threshold,
                          options.tta)


def check_tile_fits(segmenter: "Segmenter", tile: int, batch: int) -> None:
    """Refuse (:class:`~rrsis_geo.memory.TileTooLargeError`) a tile size whose batch cannot fit in
    the device's memory, before any tile is read."""
    from .memory import available_host_memory, bytes_per_pixel, check_tile_memory

    if segmenter.device.type == "cuda":
        import torch

        available, where = torch.cuda.mem_get_info(segmenter.device)[0], "the GPU"
    else:
        available, where = available_host_memory(), "this machine"
    check_tile_memory(tile, batch, bytes_per_pixel(segmenter.config), available, where)


# ------------------------------------------------------------------------------------------
# run
def _geotiff_sinks(
    targets: Tuple[Optional[Path], Optional[Path]], texts: Sequence[str], threshold: float, geo: Dict[str, Any]
) -> List[GeoTiffStripWriter]:
    prob, mask = targets
    sinks = []
    if prob is not None:
        sinks.append(GeoTiffStripWriter(prob, descriptions=texts, kind="probability", **geo))
    if mask is not None:
        sinks.append(GeoTiffStripWriter(mask, descriptions=texts, kind="mask", threshold=threshold, **geo))
    return sinks


def _merge_bands(parts: Sequence[Tuple[Path, Sequence[int]]], target: Path, descriptions: Sequence[str]) -> None:
    """Interleave the bands of per-pass GeoTIFFs into ``target``, one block row at a time."""
    import rasterio
    from rasterio.windows import Window

    from .rasterout import BLOCK

    with contextlib.ExitStack() as stack:
        handles = [(stack.enter_context(rasterio.open(path)), bands) for path, bands in parts]
        profile = handles[0][0].profile
        float_data = profile["dtype"] == "float32"
        profile.update(count=len(descriptions), compress="deflate", predictor=3 if float_data else 2, bigtiff="IF_SAFER")
        with rasterio.open(target, "w", **profile) as out:
            for i, text in enumerate(descriptions, start=1):
                out.set_band_description(i, text)
            for row in range(0, out.height, BLOCK):
                window = Window(0, row, out.width, min(BLOCK, out.height - row))
                for ds, bands in handles:
                    out.write(ds.read(window=window), indexes=[b + 1 for b in bands], window=window)


def _check_free_space(sources: Sequence[RasterSource], planned: "PredictionPlan", targets: _Targets, bands: int) -> None:
    """Room for the GeoTIFFs (twice over where several passes write parts before the merge)."""
    needs = []
    for tmps, kind in ((targets.prob, "probability"), (targets.mask, "mask")):
        for tmp, src, scene_plan in zip(tmps, sources, planned.scenes):
            if tmp is not None:
                copies = 2 if len(scene_plan.passes) > 1 else 1
                needs.append((tmp, copies * geotiff_bytes(src.region.width, src.region.height, bands, kind)))
    check_free_space(needs)


def _run_pass(run: _Run, src: RasterSource, scale: ScalePass, sinks: List[Any], prefix: str, label: str) -> Dict[str, Any]:
    if scale.tiles.resample:
        run.report(f"{prefix}resampling to {scale.gsd_m} m/px for {', '.join(scale.expressions)}")

    def on_tiles(n: int) -> None:
        run.done += n
        run.report(f"{prefix}tile {run.done}/{run.total}")

    from .engine import run_scene

    stats = run_scene(
        src, run.segmenter, [run.encoded[i] for i in scale.indexes], scale.tiles, sinks, options=run.engine,
        on_tiles=on_tiles, cancel=run.cancel,
    )
    unread = stats.extra.get("unread_windows", [])
    if stats.tiles_run == 0:
        if unread:
            raise RasterError(f"no pixel of {src.path} could be read ({len(unread)} damaged blocks); nothing to segment")
        raise RasterError(f"every pixel of {src.path} is nodata; there is nothing to segment")
    run.unread += [(label, window) for window in unread]
    return {**stats.as_dict(), "gsd_m": scale.gsd_m, "expressions": list(scale.expressions)}


def _run_one_scene(
    run: _Run, src: RasterSource, scene_plan: ScenePlan, texts: Sequence[str], assemblers: Sequence[PolygonAssembler],
    outputs: Tuple[Optional[Path], Optional[Path]], prefix: str, label: str,
) -> Dict[str, Any]:
    """Every pass of one scene; GeoTIFF bands of several passes are merged at the end."""
    geo = dict(width=src.region.width, height=src.region.height, transform=src.region_transform, crs=src.crs)
    several = len(scene_plan.passes) > 1
    parts: List[List[Tuple[Path, Sequence[int]]]] = [[], []]  # per output (prob, mask)
    passes = []
    try:
        for scale in scene_plan.passes:
            names = [texts[i] for i in scale.indexes]
            part_paths = tuple(temp_path_beside(o) if (o is not None and several) else o for o in outputs)
            for j, path in enumerate(part_paths):
                if path is not None and several:
                    parts[j].append((path, scale.indexes))
            sinks: List[Any] = [PolygonSink([assemblers[i] for i in scale.indexes])]
            sinks += _geotiff_sinks(part_paths, names, run.threshold, geo)  # type: ignore[arg-type]
            passes.append(_run_pass(run, src, scale, sinks, prefix, label))
        for target, pieces in zip(outputs, parts):
            if target is not None and several:
                _merge_bands(pieces, target, texts)
    finally:
        for pieces in parts:
            for path, _ in pieces:
                for leftover in (path, Path(f"{path}.aux.xml")):
                    leftover.unlink(missing_ok=True)
    return {**passes[0], "passes": passes} if len(passes) == 1 else {"passes": passes}


def _run_scenes(
    run: _Run, sources: Sequence[RasterSource], planned: PredictionPlan, texts: Sequence[str], options: PredictOptions,
    targets: _Targets, labels: Sequence[str],
) -> Dict[str, List[Any]]:
    """Run every scene; return each expression's polygon frames (one per scene)."""
    segmenter = run.segmenter
    run.encoded = [segmenter.encode(t) for t in texts]
    from .engine import EngineOptions

    run.engine = EngineOptions(
        batch_size=int(options.batch_size or _default_batch_size(segmenter)),
        readers=int(options.readers or _default_readers(segmenter)),
        on_read_error=options.on_read_error,
        tta=options.tta,
    )
    vector_options = VectorOptions(
        threshold=run.threshold, simplify=options.simplify, min_area=options.min_area, fill_holes=options.fill_holes
    )
    many = len(sources) > 1
    per_expression: Dict[str, List[Any]] = {t: [] for t in texts}
    for i, (src, scene_plan) in enumerate(zip(sources, planned.scenes)):
        prefix = f"scene {i + 1}/{len(sources)} {src.path.name}: " if many else ""
        meter = AreaMeter(src.crs)
        extra = {"scene": labels[i]} if many else None
        assemblers = [PolygonAssembler(t, src.region_transform, meter, vector_options, segmenter.name, extra) for t in texts]
        run.stats.append(
            _run_one_scene(run, src, scene_plan, texts, assemblers, (targets.prob[i], targets.mask[i]), prefix, labels[i])
        )
        for text, assembler in zip(texts, assemblers):
            per_expression[text].append(assembler.frame(src.crs, ["scene"] if many else ()))
    return per_expression


# ------------------------------------------------------------------------------------------
# write
def _layers(per_expression: Dict[str, List[Any]], target_crs: Any) -> Dict[str, Any]:
    import geopandas as gpd
    import pandas as pd

    layers: Dict[str, Any] = {}
    for text, frames in per_expression.items():
        frames = [
            f.to_crs(target_crs) if (f.crs is not None and target_crs is not None and f.crs != target_crs) else f
            for f in frames
        ]
        frame = frames[0] if len(frames) == 1 else gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=target_crs)
        layers[text] = frame.reset_index(drop=True)
    return layers


def _write_geopackage(layers: Dict[str, Any], path: Path, unread: Sequence[Tuple[str, Any]]) -> None:
    texts = list(layers)
    names = layer_names(texts)
    write_geopackage(
        {name: layers[t] for name, t in zip(names, texts)}, path, descriptions=dict(zip(names, texts)),
        metadata={"RRSIS_UNREAD_WINDOWS": format_windows(unread, limit=10_000)} if unread else None,
    )


# ------------------------------------------------------------------------------------------
def plan(
    scene: Union[PathLike, Sequence[PathLike]],
    expressions: Union[str, Sequence[str]],
    options: Optional[PredictOptions] = None,
    *,
    segmenter: Optional["Segmenter"] = None,
    **settings: Any,
) -> PredictionPlan:
    """What :func:`predict` would do with these arguments, reading no tile: per expression how the
    model reads it and its scale, per scene the passes. Raises what ``predict`` would raise
    before its first tile (a coarse scene: :class:`~rrsis_geo.errors.ScaleError`)."""
    options = (options or PredictOptions()).replace(**settings)
    sources = _open_scenes(_scene_list(scene), options)
    texts = clean_expressions(expressions)
    if segmenter is None:
        if not options.force_gsd:
            check_coarse_early(sources, texts, _checkpoint_knowledge(options.checkpoint))
        from .segmenter import load_model

        segmenter = load_model(options.checkpoint, **options.model_settings())
    return plan_prediction(sources, texts, segmenter, options)


def _load_model(options: PredictOptions) -> "Segmenter":
    from .segmenter import load_model

    return load_model(options.checkpoint, **options.model_settings())


def predict(
    scene: Union[PathLike, Sequence[PathLike]],
    expressions: Union[str, Sequence[str]],
    options: Optional[PredictOptions] = None,
    *,
    segmenter: Optional["Segmenter"] = None,
    progress: Optional[ProgressFn] = None,
    cancel: Any = None,
    on_plan: Optional[Callable[[PredictionPlan], None]] = None,
    load: Optional[Callable[[PredictOptions], "Segmenter"]] = None,
    **settings: Any,
):
    """Segment what ``expressions`` describe in ``scene``; return the polygons.

    Settings come as a :class:`PredictOptions` or as its fields by keyword (``output=...``;
    keywords override fields of ``options``). Returns a GeoDataFrame (columns ``expression,
    score, area_m2, model, geometry``, plus ``scene`` for several scenes) in the scene's CRS.
    ``output`` writes it as a GeoPackage, one layer per expression; ``prob_out``/``mask_out``
    write GeoTIFFs, one band per expression, on the scene's grid. Each expression runs at the
    scale of the category it names (:mod:`.scaleplan`); ``resample``: None resamples when the
    scene's GSD differs from that scale by more than 25 %, True/False force it; a scene too
    coarse raises :class:`~rrsis_geo.errors.ScaleError` unless ``force_gsd``. ``on_plan(plan)``
    sees the :class:`PredictionPlan` before any tile is read. ``progress(done, total, message)``
    counts tiles; ``cancel`` (a callable returning True, or an object with ``is_set()`` /
    ``isCanceled()``) stops the run between batches with :class:`Cancelled`, leaving no output.
    Statistics of the run are in ``result.attrs["rrsis"]``. ``on_read_error`` 'fail' ends the
    run on a pixel window that cannot be read (:class:`~rrsis_geo.errors.WindowReadError`);
    'skip' makes its unreadable blocks nodata, warns, and lists them in the GeoPackage's
    ``RRSIS_UNREAD_WINDOWS`` metadata item. ``load(options)`` gets the model when ``segmenter``
    is None, once the scenes are open and checked (default: load the checkpoint; a process that
    serves many runs passes :meth:`rrsis_geo.model_cache.ModelCache.load`).
    """
    import geopandas as gpd
    import pandas as pd

    options = (options or PredictOptions()).replace(**settings)
    run = _Run(progress, cancel)
    scenes = _scene_list(scene)
    texts = clean_expressions(expressions)

    with OutputTransaction(overwrite=options.overwrite) as outputs:
        targets = _reserve_outputs(outputs, scenes, options)
        run.report("opening scenes")
        sources = _open_scenes(scenes, options)
        target_crs = output_crs(sources, options)
        run.check_cancel()
        if segmenter is None:
            if not options.force_gsd:  # a 300 m scene is refused in a blink, not after the model loads
                check_coarse_early(sources, texts, _checkpoint_knowledge(options.checkpoint))
            run.report("loading the model")
            segmenter = (load or _load_model)(options)
        planned = plan_prediction(sources, texts, segmenter, options)
        _check_free_space(sources, planned, targets, len(texts))
        if on_plan is not None:
            on_plan(planned)
        run.total = planned.tiles
        run.report("encoding expressions")
        run.segmenter = segmenter
        run.threshold = planned.threshold
        per_expression = _run_scenes(run, sources, planned, texts, options, targets, _scene_labels(scenes))
        run.check_cancel()
        if run.unread:
            warnings.warn(
                f"{len(run.unread)} unreadable pixel window(s) were treated as nodata: {format_windows(run.unread)}",
                stacklevel=2,
            )
        layers = _layers(per_expression, target_crs)
        if targets.gpkg is not None:
            run.report("writing the GeoPackage")
            _write_geopackage(layers, targets.gpkg, run.unread)
        run.check_cancel()
        outputs.commit()

    frames = list(layers.values())
    result = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=target_crs) if len(frames) > 1 else frames[0]
    result.attrs["rrsis"] = {
        "scenes": run.stats, "threshold": run.threshold, "tile_size": planned.tile_size, "model": segmenter.name,
        "plan": planned.to_dict(),
    }
    run.done = run.total
    run.report("done")
    return result
