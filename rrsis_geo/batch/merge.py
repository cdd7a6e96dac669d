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


def _same_crs(first: Optional[Tuple[Scene, Any]], scene: Scene, frames: Dict[str, Any]) -> Tuple[Scene, Any]:
    """The run's CRS (the first part's); refuses a part in another one."""
    crs = next(iter(frames.values())).crs
    if first is None:
        return scene, crs
    if crs != first[1]:
        named = f"{first[0].label}: {first[1].to_string() if first[1] else 'none'}, {scene.label}: " \
                f"{crs.to_string() if crs else 'none'}"
        raise InputError(
            f"the scenes are in different CRSs ({named}) and the merged result has one; "
            "their parts are kept in the run directory",
            fix=Fix("crs", example="EPSG:4326", effect="to reproject every scene's polygons to one CRS"),
        )
    return first


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
    ``predict`` does with its ``crs`` option); expression -> polygon count. The GeoPackage is
    written one part at a time (appended), so memory does not grow with the number of scenes; the
    extra formats are written from it one table at a time."""
    import pyogrio

    for fmt in formats:
        if fmt not in EXTRA_FORMATS:
            raise InputError(f"unknown output format {fmt!r}; use {' or '.join(EXTRA_FORMATS)}")
    target = _parse_crs(crs) if crs is not None else None
    names = layer_names(expressions)
    counts = {e: 0 for e in expressions}
    with OutputTransaction(overwrite=overwrite) as outputs:
        temp = outputs.add(output, what="merged GeoPackage")
        first = None
        for index, (scene, path) in enumerate(parts):
            frames = read_part(path, expressions, scene.label)
            if target is not None:
                frames = {e: f.to_crs(target) if f.crs != target else f for e, f in frames.items()}
            first = _same_crs(first, scene, frames)
            if index == 0:  # creates the layers, with their descriptions and the run's metadata
                write_geopackage({n: frames[e] for n, e in zip(names, expressions)}, temp,
                                 descriptions=dict(zip(names, expressions)), metadata=metadata)
            else:
                for name, expression in zip(names, expressions):
                    if len(frames[expression]):
                        pyogrio.write_dataframe(frames[expression], str(temp), layer=name, driver="GPKG",
                                                geometry_type="Polygon", append=True)
            for expression in expressions:
                counts[expression] += len(frames[expression])
        for fmt in formats:
            _write_extra(temp, names, output, fmt, outputs)
        outputs.commit()
    return counts


def _write_extra(merged: Path, names: Sequence[str], output: Path, fmt: str, outputs: OutputTransaction) -> None:
    """All expressions in one table (an ``expression`` column is there already), read back from
    the merged GeoPackage: FlatGeobuf or GeoParquet. This one table is held in memory."""
    import geopandas as gpd
    import pandas as pd

    frames = [gpd.read_file(merged, layer=name, engine="pyogrio") for name in names]
    table = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=frames[0].crs)
    temp = outputs.add(extra_path(output, fmt), what=f"merged {fmt}")
    if fmt == "fgb":
        table.to_file(temp, driver="FlatGeobuf", engine="pyogrio")
        return
    try:
        import pyarrow  # noqa: F401 - GeoParquet's writer
    except ImportError as exc:
        from ..errors import DependencyError

        raise DependencyError(f"--format parquet needs pyarrow ({exc}); pip install 'rrsis[batch]'") from exc
    table.to_parquet(temp)
