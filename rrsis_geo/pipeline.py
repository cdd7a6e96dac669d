"""``predict``: scenes + expressions -> polygons (and optional GeoPackage / GeoTIFF outputs).

Everything a user can get wrong is checked before the first tile is read (outputs, scenes, bands,
bbox, numbers, expressions, checkpoint); outputs are written to temporary files beside their
destinations and renamed together at the very end, so an error, a cancel or Ctrl-C leaves
nothing behind and never touches an existing file.

Several scenes (``predict([a, b], ...)``) give one result: every expression's features from all
scenes, with a ``scene`` column; scenes in another CRS than the first are reprojected to the
first scene's CRS. ``prob_out``/``mask_out`` then need a ``{scene}`` placeholder (replaced by
the scene's file stem), one GeoTIFF per scene. Several expressions give one band each in those
GeoTIFFs (the expression is the band description) and one GeoPackage layer each.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from .engine import EngineOptions, plan_tiles, run_scene
from .errors import Cancelled, InputError, RasterError
from .io_utils import OutputTransaction, check_free_space
from .raster import BBox, RasterSource, open_raster
from .rasterout import GeoTiffStripWriter, geotiff_bytes
from .read_faults import check_policy, format_windows
from .segmenter import Segmenter, load_model
from .vectorize import AreaMeter, PolygonAssembler, PolygonSink, VectorOptions, layer_names, write_geopackage

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


def _check_number(name: str, value: Optional[float], low: float, high: float = math.inf, *, low_open: bool = False, high_open: bool = False) -> None:
    if value is None:
        return
    below = value <= low if low_open else value < low
    above = value >= high if high_open else value > high
    if not math.isfinite(value) or below or above:
        lo = "(" if low_open else "["
        hi = ")" if high_open or high == math.inf else "]"
        raise InputError(f"{name} {value} is out of range {lo}{low}, {high}{hi}")


def _default_batch_size(segmenter: Segmenter) -> int:
    return int(segmenter.config.get("batch_size") or (16 if segmenter.device.type == "cuda" else 2))


def _default_readers(segmenter: Segmenter) -> int:
    if segmenter.device.type != "cuda":
        return 1  # the CPU cores are busy with the model
    return max(1, min(4, (os.cpu_count() or 2) // 4))


def predict(
    scene: Union[PathLike, Sequence[PathLike]],
    expressions: Union[str, Sequence[str]],
    *,
    segmenter: Optional[Segmenter] = None,
    checkpoint: Optional[PathLike] = None,
    device: str = "auto",
    output: Optional[PathLike] = None,
    overwrite: bool = False,
    tile_size: Optional[int] = None,
    overlap: float = 0.25,
    batch_size: Optional[int] = None,
    threshold: Optional[float] = None,
    bands: Optional[Sequence[int]] = None,
    bbox: Optional[BBox] = None,
    allow_no_crs: bool = False,
    prob_out: Optional[PathLike] = None,
    mask_out: Optional[PathLike] = None,
    simplify: float = 0.0,
    min_area: float = 0.0,
    fill_holes: float = 0.0,
    resample: Optional[bool] = None,
    readers: Optional[int] = None,
    compile: bool = False,
    on_read_error: str = "fail",
    progress: Optional[ProgressFn] = None,
    cancel: Any = None,
):
    """Segment what ``expressions`` describe in ``scene``; return the polygons.

    Returns a GeoDataFrame (columns ``expression, score, area_m2, model, geometry``, plus
    ``scene`` for several scenes) in the scene's CRS. ``output`` writes it as a GeoPackage, one
    layer per expression; ``prob_out``/``mask_out`` write GeoTIFFs, one band per expression.
    ``resample``: None resamples automatically when the scene's GSD differs from the model's
    training GSD by more than 25 %, True/False force it. ``progress(done, total, message)``
    counts tiles; ``cancel`` (a callable returning True, or an object with ``is_set()`` /
    ``isCanceled()``) stops the run between batches with :class:`Cancelled`, leaving no output.
    Statistics of the run are in ``result.attrs["rrsis"]``. ``on_read_error`` 'fail' ends
    the run on a pixel window that cannot be read (:class:`~rrsis_geo.errors.WindowReadError`);
    'skip' makes its unreadable blocks nodata, warns, and lists them in the GeoPackage's
    ``RRSIS_UNREAD_WINDOWS`` metadata item.
    """
    import geopandas as gpd
    import pandas as pd

    def report(done: int, total: int, message: str) -> None:
        if progress is not None:
            progress(done, total, message)

    def check_cancel() -> None:
        from .engine import _cancel_requested

        if _cancel_requested(cancel):
            raise Cancelled("cancelled by the user; nothing was written")

    scenes = _scene_list(scene)
    texts = clean_expressions(expressions)
    check_policy(on_read_error)
    _check_number("overlap", overlap, 0.0, 0.9, high_open=True)
    _check_number("threshold", threshold, 0.0, 1.0, low_open=True, high_open=True)
    _check_number("simplify", simplify, 0.0)
    _check_number("min_area", min_area, 0.0)
    _check_number("fill_holes", fill_holes, 0.0)
    if batch_size is not None and batch_size < 1:
        raise InputError(f"batch size {batch_size} must be at least 1")
    if tile_size is not None and tile_size < 16:
        raise InputError(f"tile size {tile_size} is too small; use at least 16 px (the model's input size is best)")

    with OutputTransaction(overwrite=overwrite) as outputs:
        gpkg_tmp = outputs.add(output, what="output GeoPackage") if output is not None else None
        prob_targets = _per_scene_paths(prob_out, scenes, "--prob-out")
        mask_targets = _per_scene_paths(mask_out, scenes, "--mask-out")
        prob_tmps = [outputs.add(p, what="probability GeoTIFF") if p else None for p in prob_targets]
        mask_tmps = [outputs.add(p, what="mask GeoTIFF") if p else None for p in mask_targets]

        report(0, 0, "opening scenes")
        sources: List[RasterSource] = [
            open_raster(s, bands=bands, bbox=bbox, allow_no_crs=allow_no_crs, on_read_error=on_read_error) for s in scenes
        ]
        check_free_space([
            (tmp, geotiff_bytes(src.region.width, src.region.height, len(texts), kind))
            for tmps, kind in ((prob_tmps, "probability"), (mask_tmps, "mask"))
            for tmp, src in zip(tmps, sources) if tmp is not None
        ])
        crs_known = [src.crs is not None for src in sources]
        if any(crs_known) and not all(crs_known):
            raise InputError("the scenes mix georeferenced rasters and rasters without a CRS; predict them separately")
        if not all(crs_known) and (min_area > 0 or fill_holes > 0):
            raise InputError("--min-area and --fill-holes are in m2 and need a scene with a CRS")
        check_cancel()

        if segmenter is None:
            report(0, 0, "loading the model")
            segmenter = load_model(checkpoint, device, compile=compile)
        report(0, 0, "encoding expressions")
        encoded = [segmenter.encode(t) for t in texts]
        thr = segmenter.threshold if threshold is None else float(threshold)
        tile = int(tile_size or segmenter.input_size)
        options = EngineOptions(
            batch_size=int(batch_size or _default_batch_size(segmenter)),
            readers=int(readers or _default_readers(segmenter)),
            on_read_error=on_read_error,
        )
        plans = [plan_tiles(src, tile, overlap, model_gsd=segmenter.gsd_m, resample=resample) for src in sources]
        total = sum(len(p.grid) for p in plans)
        vector_options = VectorOptions(threshold=thr, simplify=simplify, min_area=min_area, fill_holes=fill_holes)
        labels = _scene_labels(scenes)
        many = len(scenes) > 1

        done = 0
        per_expression: Dict[str, List[Any]] = {t: [] for t in texts}
        unread: List[Any] = []  # (scene label, Window) that could not be read (on_read_error 'skip')
        run_stats = []
        for i, (src, plan) in enumerate(zip(sources, plans)):
            prefix = f"scene {i + 1}/{len(scenes)} {src.path.name}: " if many else ""
            meter = AreaMeter(src.crs)
            assemblers = [
                PolygonAssembler(
                    t, src.region_transform, meter, vector_options, segmenter.name, {"scene": labels[i]} if many else None
                )
                for t in texts
            ]
            sinks: List[Any] = [PolygonSink(assemblers)]
            geo = dict(width=src.region.width, height=src.region.height, transform=src.region_transform, crs=src.crs)
            if prob_tmps[i] is not None:
                sinks.append(GeoTiffStripWriter(prob_tmps[i], descriptions=texts, kind="probability", **geo))
            if mask_tmps[i] is not None:
                sinks.append(GeoTiffStripWriter(mask_tmps[i], descriptions=texts, kind="mask", threshold=thr, **geo))
            if plan.resample:
                report(done, total, f"{prefix}resampling to the model's {segmenter.gsd_m} m/px")

            def on_tiles(n: int, _prefix: str = prefix) -> None:
                nonlocal done
                done += n
                report(done, total, f"{_prefix}tile {done}/{total}")

            stats = run_scene(src, segmenter, encoded, plan, sinks, options=options, on_tiles=on_tiles, cancel=cancel)
            if stats.tiles_run == 0:
                damaged = len(stats.extra.get("unread_windows", []))
                if damaged:
                    raise RasterError(f"no pixel of {src.path} could be read ({damaged} damaged blocks); nothing to segment")
                raise RasterError(f"every pixel of {src.path} is nodata; there is nothing to segment")
            run_stats.append(stats.as_dict())
            unread += [(labels[i], w) for w in stats.extra.get("unread_windows", [])]
            for text, assembler in zip(texts, assemblers):
                frame = assembler.frame(src.crs, ["scene"] if many else ())
                per_expression[text].append(frame)
        check_cancel()
        if unread:
            warnings.warn(f"{len(unread)} unreadable pixel window(s) were treated as nodata: {format_windows(unread)}", stacklevel=2)

        target_crs = sources[0].crs
        layers: Dict[str, Any] = {}
        for text in texts:
            frames = [f.to_crs(target_crs) if (f.crs is not None and target_crs is not None and f.crs != target_crs) else f for f in per_expression[text]]
            frame = frames[0] if len(frames) == 1 else gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=target_crs)
            layers[text] = frame.reset_index(drop=True)

        if gpkg_tmp is not None:
            report(done, total, "writing the GeoPackage")
            names = layer_names(texts)
            write_geopackage(
                {name: layers[t] for name, t in zip(names, texts)}, gpkg_tmp, descriptions=dict(zip(names, texts)),
                metadata={"RRSIS_UNREAD_WINDOWS": format_windows(unread, limit=10_000)} if unread else None,
            )
        check_cancel()
        outputs.commit()

    frames = list(layers.values())
    result = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=target_crs) if len(frames) > 1 else frames[0]
    result.attrs["rrsis"] = {"scenes": run_stats, "threshold": thr, "tile_size": tile, "model": segmenter.name}
    report(total, total, "done")
    return result
