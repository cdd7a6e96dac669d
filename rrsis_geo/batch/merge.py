"""One result from the parts of a batch run: a GeoPackage with one layer per expression and a
``scene`` attribute, optionally FlatGeobuf or GeoParquet files, each written atomically.

The merged layer of an expression is the concatenation, in the run's scene order, of what
``predict`` writes for each scene alone, with the scene's label in ``scene``: the same polygons,
attribute for attribute, as a serial loop of ``predict`` over the scenes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..errors import Fix, InputError
from ..io_utils import OutputTransaction
from ..vectorize import layer_names, write_geopackage
from .scenes import Scene

#: the extra formats, by ``--format`` name: (suffix, writer)
EXTRA_FORMATS = ("fgb", "parquet")


def extra_path(output: Path, fmt: str) -> Path:
    """Where ``--format fmt`` writes beside the merged GeoPackage."""
    return output.with_suffix(".fgb" if fmt == "fgb" else ".parquet")


def read_part(part: Path, expressions: Sequence[str], label: str) -> Dict[str, Any]:
    """Expression -> the GeoDataFrame of its layer in ``part``, with ``scene`` = ``label``."""
    import geopandas as gpd

    frames = {}
    for name, expression in zip(layer_names(expressions), expressions):
        try:
            frame = gpd.read_file(part, layer=name, engine="pyogrio")
        except Exception as exc:  # pyogrio's DataSourceError is no OSError
            raise InputError(f"cannot read the part {part} (layer {name}): {' '.join(str(exc).split())}; "
                             "delete it and run the same command again to redo its scene") from exc
        frame.insert(len(frame.columns) - 1, "scene", label)
        frames[expression] = frame
    return frames


def _common_crs(parts: List[Tuple[Scene, Dict[str, Any]]]) -> Any:
    crss = {}
    for scene, frames in parts:
        crs = next(iter(frames.values())).crs
        crss.setdefault(crs.to_string() if crs is not None else "none", (scene, crs))
    if len(crss) > 1:
        named = ", ".join(f"{scene.label}: {key}" for key, (scene, _) in list(crss.items())[:4])
        raise InputError(
            f"the scenes are in different CRSs ({named}{', …' if len(crss) > 4 else ''}) and the merged result has one; "
            "their parts are kept in the run directory",
            fix=Fix("crs", example="EPSG:4326", effect="to reproject every scene's polygons to one CRS"),
        )
    return next(iter(crss.values()))[1]


def _parse_crs(crs: str) -> Any:
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        return CRS.from_user_input(crs)
    except CRSError as exc:
        raise InputError(f"crs {crs!r} is not a CRS PROJ knows ({exc}); give e.g. EPSG:4326",
                         fix=Fix("crs", example="EPSG:4326")) from exc


def merge_parts(
    parts: List[Tuple[Scene, Path]], expressions: Sequence[str], output: Path, *, overwrite: bool = False,
    formats: Sequence[str] = (), metadata: Optional[Dict[str, str]] = None, crs: Optional[str] = None,
) -> Dict[str, int]:
    """Write the merged result of ``parts`` (in order) to ``output`` (+ one file per extra
    format beside it, same stem), every scene's polygons reprojected to ``crs`` when given (as
    ``predict`` does with its ``crs`` option); expression -> polygon count."""
    import geopandas as gpd
    import pandas as pd

    for fmt in formats:
        if fmt not in EXTRA_FORMATS:
            raise InputError(f"unknown output format {fmt!r}; use {' or '.join(EXTRA_FORMATS)}")
    read = [(scene, read_part(path, expressions, scene.label)) for scene, path in parts]
    if crs is not None:
        target = _parse_crs(crs)
        read = [(scene, {e: f.to_crs(target) if f.crs != target else f for e, f in frames.items()}) for scene, frames in read]
    crs = _common_crs(read) if read else None
    layers = {}
    for expression in expressions:
        frames = [frames[expression] for _, frames in read]
        layers[expression] = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=crs) if frames else None
    with OutputTransaction(overwrite=overwrite) as outputs:
        temp = outputs.add(output, what="merged GeoPackage")
        names = layer_names(expressions)
        write_geopackage({n: layers[e] for n, e in zip(names, expressions) if layers[e] is not None}, temp,
                         descriptions=dict(zip(names, expressions)), metadata=metadata)
        for fmt in formats:
            _write_extra(layers, expressions, output, fmt, outputs)
        outputs.commit()
    return {e: (0 if layers[e] is None else int(len(layers[e]))) for e in expressions}


def _write_extra(layers: Dict[str, Any], expressions: Sequence[str], output: Path, fmt: str,
                 outputs: OutputTransaction) -> None:
    """All expressions in one table (an ``expression`` column is there already): FlatGeobuf or GeoParquet."""
    import geopandas as gpd
    import pandas as pd

    frames = [layers[e] for e in expressions if layers[e] is not None and len(layers[e])]
    if not frames:
        frames = [layers[e] for e in expressions if layers[e] is not None][:1]
    table = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=frames[0].crs) if frames else None
    target = extra_path(output, fmt)
    temp = outputs.add(target, what=f"merged {fmt}")
    if table is None:
        raise InputError("no polygons and no part to write; nothing was merged")
    if fmt == "fgb":
        table.to_file(temp, driver="FlatGeobuf", engine="pyogrio")
        return
    try:
        import pyarrow  # noqa: F401 - GeoParquet's writer
    except ImportError as exc:
        from ..errors import DependencyError

        raise DependencyError(f"--format parquet needs pyarrow ({exc}); pip install 'rrsis[batch]'") from exc
    table.to_parquet(temp)
