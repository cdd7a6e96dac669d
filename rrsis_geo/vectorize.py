"""Probabilities -> polygons -> GeoDataFrame -> GeoPackage.

Strips of probabilities arrive top to bottom. Each strip is thresholded (nodata excluded),
labelled into 4-connected components and polygonised with ``rasterio.features.shapes`` in
*pixel* coordinates, which are exact integers, so that pieces of one object cut by a strip seam
share their seam edge exactly and dissolve cleanly. A component touching the strip's last row
stays open until the next strip shows whether it continues; all others are finished at once, so
memory holds only the objects crossing the current seam (plus the finished polygons).

A finished object is mapped to scene coordinates with the region's affine transform, then: holes
smaller than ``fill_holes`` m2 are filled, the outline is simplified by ``simplify`` map units,
and objects smaller than ``min_area`` m2 are dropped. ``area_m2`` is the geodesic area on the
CRS's ellipsoid (correct for geographic CRSs and for projections that do not preserve area);
``score`` is the mean probability of the object's pixels above the threshold.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .sinks import StripSink

PathLike = Union[str, "os.PathLike[str]"]

COLUMNS = ["expression", "score", "area_m2", "model"]


class AreaMeter:
    """Areas in square metres of geometries given in ``crs`` (NaN without a CRS).

    Pixel-sized objects are many, so areas are computed for arrays of geometries at once: the
    planar area times the local areal scale (m2 of ellipsoid per map unit2) at the object's
    centre, which equals the geodesic area to first order. For a geographic CRS that scale is
    ``M * N * cos(lat)`` (the ellipsoid's radii of curvature); for a projected one it is the
    Jacobian of map -> ellipsoid measured by central differences 10 m apart (PROJ's own scale
    factors would not do: for Web Mercator they refer to a sphere, not to WGS 84). Objects more
    than :attr:`exact_above_m` across are densified and measured exactly on the ellipsoid
    (pyproj geodesic), one by one.
    """

    exact_above_m = 2000.0

    def __init__(self, crs) -> None:
        self.crs = None
        self.geod = None
        self.unit = 1.0  # metres (projected) or radians (geographic) per CRS unit
        self.geographic = False
        self._to_lonlat = None
        if crs is None:
            return
        import pyproj

        pcrs = pyproj.CRS.from_user_input(crs)
        self.crs = pcrs
        self.geod = pcrs.get_geod()
        self.geographic = bool(pcrs.is_geographic)
        try:
            self.unit = float(pcrs.axis_info[0].unit_conversion_factor)
        except (IndexError, AttributeError, TypeError):
            self.unit = 1.0
        if self.geod is not None and not self.geographic:
            self._to_lonlat = pyproj.Transformer.from_crs(pcrs, pcrs.geodetic_crs, always_xy=True)

    @property
    def known(self) -> bool:
        return self.crs is not None

    def __call__(self, geom) -> float:
        return float(self.areas(np.array([geom], dtype=object))[0])

    def areas(self, geoms: np.ndarray) -> np.ndarray:
        """Areas (m2) of an array of (multi)polygons."""
        import shapely

        geoms = np.asarray(geoms, dtype=object)
        if self.crs is None:
            return np.full(len(geoms), np.nan)
        if len(geoms) == 0:
            return np.zeros(0)
        planar = shapely.area(geoms)
        if self.geod is None:  # an engineering CRS: no ellipsoid, planar area in its unit
            return planar * self.unit**2
        xmin, ymin, xmax, ymax = shapely.bounds(geoms).T
        cx, cy = (xmin + xmax) / 2, (ymin + ymax) / 2
        if self.geographic:
            out = planar * self._radii_scale(cy * self.unit) * self.unit**2  # unit: radians per unit
            span = np.maximum(xmax - xmin, ymax - ymin) * self.unit * self.geod.a
        else:
            out = planar * self._projected_scale(cx, cy)
            span = np.maximum(xmax - xmin, ymax - ymin) * self.unit
        exact = (span > self.exact_above_m) | ~np.isfinite(out)
        for i in np.flatnonzero(exact):
            out[i] = self._geodesic(geoms[i])
        return out

    def _radii_scale(self, lat: np.ndarray) -> np.ndarray:
        """``M * N * cos(lat)``: m2 of ellipsoid per radian2 of longitude x latitude."""
        e2, a = self.geod.es, self.geod.a
        w = 1 - e2 * np.sin(lat) ** 2
        return a * (1 - e2) / w**1.5 * a / np.sqrt(w) * np.cos(lat)

    def _projected_scale(self, cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
        """m2 of ellipsoid per map unit2 at (cx, cy), by central differences."""
        h = 10.0 / self.unit  # 10 m in map units
        n = len(cx)
        xs = np.concatenate([cx + h, cx - h, cx, cx])
        ys = np.concatenate([cy, cy, cy + h, cy - h])
        lon, lat = self._to_lonlat.transform(xs, ys)  # >= 4 points: never pyproj's scalar path
        lon = np.radians(np.asarray(lon)).reshape(4, n)
        lat = np.radians(np.asarray(lat)).reshape(4, n)
        phi = (lat[0] + lat[1] + lat[2] + lat[3]) / 4
        e2, a = self.geod.es, self.geod.a
        w = 1 - e2 * np.sin(phi) ** 2
        m, east = a * (1 - e2) / w**1.5, a / np.sqrt(w) * np.cos(phi)

        def dlon(u: np.ndarray, v: np.ndarray) -> np.ndarray:
            return (u - v + np.pi) % (2 * np.pi) - np.pi  # across the antimeridian too

        ex, nx = dlon(lon[0], lon[1]) * east / (2 * h), (lat[0] - lat[1]) * m / (2 * h)
        ey, ny = dlon(lon[2], lon[3]) * east / (2 * h), (lat[2] - lat[3]) * m / (2 * h)
        return np.abs(ex * ny - ey * nx)

    def _geodesic(self, geom) -> float:
        import shapely
        from shapely.geometry.polygon import orient

        # straight map edges are curves on the ellipsoid: densify to ~100 m before measuring
        step = 100.0 / (self.unit * self.geod.a) if self.geographic else 100.0 / self.unit
        geom = shapely.segmentize(geom, step)
        if self._to_lonlat is not None:
            tf = self._to_lonlat

            def to_lonlat(coords: np.ndarray) -> np.ndarray:
                x, y = tf.transform(coords[:, 0], coords[:, 1])
                return np.column_stack([x, y])

            geom = shapely.transform(geom, to_lonlat)
        elif self.unit != np.pi / 180:
            geom = shapely.transform(geom, lambda c: c * (self.unit * 180 / np.pi))
        total = 0.0
        for part in getattr(geom, "geoms", [geom]):
            # pyproj sums signed ring areas: exterior counter-clockwise, holes clockwise
            area, _ = self.geod.geometry_area_perimeter(orient(part, 1.0))
            total += abs(area)
        return total


@dataclass
class VectorOptions:
    threshold: float = 0.5
    simplify: float = 0.0  # map units
    min_area: float = 0.0  # m2
    fill_holes: float = 0.0  # m2


@dataclass
class _Piece:
    """An object under construction: pixel-coordinate polygons and its probability sums."""

    polygons: List = field(default_factory=list)
    prob_sum: float = 0.0
    pixels: int = 0

    def absorb(self, other: "_Piece") -> None:
        self.polygons.extend(other.polygons)
        self.prob_sum += other.prob_sum
        self.pixels += other.pixels


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, a: int) -> int:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _polygons_from_shapes(features) -> Tuple[List[int], np.ndarray]:
    """``rasterio.features.shapes`` output -> (values, array of shapely Polygons), built in one
    call from flat coordinate arrays (much faster than one ``shape()`` per feature)."""
    import shapely

    values: List[int] = []
    coords: List = []
    ring_ends: List[int] = []
    polygon_ends: List[int] = []
    for geojson, value in features:
        values.append(int(value))
        for ring in geojson["coordinates"]:
            coords.extend(ring)
            ring_ends.append(len(coords))
        polygon_ends.append(len(ring_ends))
    if not values:
        return values, np.empty(0, dtype=object)
    geoms = shapely.from_ragged_array(
        shapely.GeometryType.POLYGON,
        np.asarray(coords, dtype=np.float64),
        (np.asarray([0] + ring_ends, dtype=np.int64), np.asarray([0] + polygon_ends, dtype=np.int64)),
    )
    return values, geoms


def _components(
    row0: int, probs: np.ndarray, mask: np.ndarray
) -> Optional[Tuple[Dict[int, _Piece], np.ndarray, np.ndarray]]:
    """A strip's 4-connected components of ``mask`` as pieces (pixel-coordinate polygons and
    probability sums) by label, with the labels of the strip's first and last rows; None when
    the mask is empty.

    Labelling, sums and tracing run on the mask's bounding box only: a referring expression
    usually marks a small part of a strip, and tracing cost grows with the pixels scanned.
    Labels, sums and polygons are the same as over the whole strip (labels follow raster order
    either way, sums add the same pixels in the same order, vertices are integers shifted back).
    """
    from affine import Affine
    from rasterio.features import shapes
    from scipy import ndimage

    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return None
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    box = mask[r0:r1, c0:c1]
    labels, count = ndimage.label(box)  # default structure: 4-connectivity, as shapes()
    labels = labels.astype(np.int32, copy=False)
    marked = labels[box]
    sums = np.bincount(marked, weights=probs[r0:r1, c0:c1][box], minlength=count + 1)
    pixels = np.bincount(marked, minlength=count + 1)
    values, geoms = _polygons_from_shapes(
        shapes(labels, mask=box, connectivity=4, transform=Affine.translation(c0, row0 + r0))
    )
    pieces: Dict[int, _Piece] = {}
    for label, geom in zip(values, geoms):
        piece = pieces.setdefault(label, _Piece(prob_sum=float(sums[label]), pixels=int(pixels[label])))
        piece.polygons.append(geom)
    width = mask.shape[1]
    first, last = np.zeros(width, np.int32), np.zeros(width, np.int32)
    if r0 == 0:
        first[c0:c1] = labels[0]
    if r1 == mask.shape[0]:
        last[c0:c1] = labels[-1]
    return pieces, first, last


class PolygonAssembler:
    """Strips of one expression's probabilities -> finished polygons with their attributes."""

    def __init__(
        self,
        expression: str,
        transform,
        meter: AreaMeter,
        options: VectorOptions,
        model: str,
        extra: Optional[Dict[str, str]] = None,
    ) -> None:
        self.expression = expression
        self.transform = transform
        self.meter = meter
        self.options = options
        self.model = model
        self.extra = dict(extra or {})
        self._open: Dict[int, _Piece] = {}  # label in the previous strip's last row -> object
        self._prev_last_row: Optional[np.ndarray] = None
        self._finished: List[_Piece] = []  # waiting for the bulk finishing step
        self._geometries: List[np.ndarray] = []
        self._scores: List[np.ndarray] = []
        self._areas: List[np.ndarray] = []

    @property
    def count(self) -> int:
        """Polygons finished so far."""
        return sum(len(g) for g in self._geometries)

    # ---- strips ----------------------------------------------------------------------------
    def add_strip(self, row0: int, probs: np.ndarray, valid: np.ndarray) -> None:
        """Add region rows ``[row0, row0 + n)``: ``probs[n, W]`` float32, ``valid[n, W]`` bool."""
        found = _components(row0, probs, (probs >= self.options.threshold) & valid)
        if found is None:
            self._close_all()
            self._prev_last_row = None
            self._finish_pending()
            return
        pieces, first, last = found

        # join with the objects left open at the seam above
        merged: Dict[int, _Piece] = dict(pieces)
        if self._open and self._prev_last_row is not None:
            above, below = self._prev_last_row, first
            both = (above > 0) & (below > 0)
            pairs = np.unique(np.stack([above[both], below[both]], axis=1), axis=0) if both.any() else np.empty((0, 2), int)
            old_objects = list({id(p): p for p in self._open.values()}.values())
            old_index = {id(p): i for i, p in enumerate(old_objects)}
            new_labels = sorted(pieces)
            new_index = {lab: len(old_objects) + i for i, lab in enumerate(new_labels)}
            uf = _UnionFind(len(old_objects) + len(new_labels))
            for a, b in pairs:
                uf.union(old_index[id(self._open[int(a)])], new_index[int(b)])
            groups: Dict[int, List[int]] = {}
            for node in range(len(old_objects) + len(new_labels)):
                groups.setdefault(uf.find(node), []).append(node)
            merged = {}
            for nodes in groups.values():
                olds = [old_objects[n] for n in nodes if n < len(old_objects)]
                news = [new_labels[n - len(old_objects)] for n in nodes if n >= len(old_objects)]
                if not news:  # an open object that does not continue: finished
                    self._finished.extend(olds)
                    continue
                target = pieces[news[0]]
                for lab in news[1:]:
                    target.absorb(pieces[lab])
                for obj in olds:
                    target.absorb(obj)
                for lab in news:
                    merged[lab] = target
        else:
            self._close_all()

        touching = set(np.unique(last[last > 0]).tolist())
        self._open = {lab: merged[lab] for lab in touching}
        still_open = {id(p) for p in self._open.values()}
        done = {id(p): p for lab, p in merged.items() if lab not in touching}
        self._finished.extend(p for key, p in done.items() if key not in still_open)
        self._prev_last_row = last
        self._finish_pending()

    def close(self) -> None:
        """No more strips: finish every open object."""
        self._close_all()
        self._prev_last_row = None
        self._finish_pending()

    def _close_all(self) -> None:
        self._finished.extend({id(p): p for p in self._open.values()}.values())
        self._open = {}

    # ---- objects ---------------------------------------------------------------------------
    def _finish_pending(self) -> None:
        """Map finished objects to scene coordinates, fill holes, simplify, measure, filter
        (vectorised over all objects finished by the last strip)."""
        import shapely

        pieces, self._finished = self._finished, []
        if not pieces:
            return
        geoms = np.empty(len(pieces), dtype=object)
        # (pieces share seam edges exactly but are not noded alike, so no coverage union)
        geoms[:] = [p.polygons[0] if len(p.polygons) == 1 else shapely.union_all(p.polygons) for p in pieces]
        scores = np.array([p.prob_sum / max(1, p.pixels) for p in pieces])
        geoms, index = shapely.get_parts(geoms, return_index=True)  # a union is one polygon; be sure
        scores = scores[index]
        t = self.transform
        matrix = np.array([[t.a, t.d], [t.b, t.e]])
        offset = np.array([t.c, t.f])
        geoms = shapely.transform(geoms, lambda xy: xy @ matrix + offset)
        opts = self.options
        if opts.fill_holes > 0:
            for i in np.flatnonzero(shapely.get_num_interior_rings(geoms) > 0):
                geoms[i] = self._fill_small_holes(geoms[i])
        if opts.simplify > 0:
            geoms = shapely.simplify(geoms, opts.simplify, preserve_topology=True)
        keep = ~shapely.is_empty(geoms)
        geoms, scores = geoms[keep], scores[keep]
        areas = self.meter.areas(geoms)
        if opts.min_area > 0:
            keep = areas >= opts.min_area
            geoms, scores, areas = geoms[keep], scores[keep], areas[keep]
        if len(geoms):
            self._geometries.append(geoms)
            self._scores.append(scores)
            self._areas.append(areas)

    def _fill_small_holes(self, polygon):
        import shapely
        from shapely.geometry import Polygon

        rings = list(polygon.interiors)
        holes = np.empty(len(rings), dtype=object)
        holes[:] = [Polygon(r) for r in rings]
        keep = self.meter.areas(holes) >= self.options.fill_holes
        return shapely.Polygon(polygon.exterior, [r for r, k in zip(rings, keep) if k])

    def frame(self, crs, extra_columns: Sequence[str] = ()):
        """The finished polygons as a GeoDataFrame (standard columns, then ``extra_columns``)."""
        import geopandas as gpd
        import pandas as pd

        geoms = np.concatenate(self._geometries) if self._geometries else np.empty(0, dtype=object)
        n = len(geoms)
        data = {
            "expression": pd.Series([self.expression] * n, dtype="object"),
            "score": pd.Series(np.concatenate(self._scores) if n else [], dtype="float64"),
            "area_m2": pd.Series(np.concatenate(self._areas) if n else [], dtype="float64"),
            "model": pd.Series([self.model] * n, dtype="object"),
        }
        for column in extra_columns:
            data[column] = pd.Series([self.extra.get(column, "")] * n, dtype="object")
        return gpd.GeoDataFrame(data, geometry=gpd.GeoSeries(geoms, crs=crs), crs=crs)


class PolygonSink(StripSink):
    """The strip sink that polygonises every expression of a run."""

    def __init__(self, assemblers: Sequence[PolygonAssembler]) -> None:
        self.assemblers = list(assemblers)

    def write(self, row0: int, probs: np.ndarray, valid: np.ndarray) -> None:
        for k, assembler in enumerate(self.assemblers):
            assembler.add_strip(row0, probs[k], valid)

    def close(self) -> None:
        for assembler in self.assemblers:
            assembler.close()


def layer_names(expressions: Sequence[str], max_length: int = 48) -> List[str]:
    """GeoPackage layer names from expressions: lower case, ``[a-z0-9_]``, unique."""
    names: List[str] = []
    for expression in expressions:
        base = re.sub(r"[^0-9a-z]+", "_", expression.lower()).strip("_")[:max_length].strip("_") or "expression"
        if base[0].isdigit():
            base = f"e_{base}"
        name, k = base, 2
        while name in names:
            name = f"{base}_{k}"
            k += 1
        names.append(name)
    return names


def write_geopackage(
    layers: Dict[str, "object"],
    path: PathLike,
    *,
    descriptions: Optional[Dict[str, str]] = None,
    metadata: Optional[Dict[str, str]] = None,
) -> None:
    """Write GeoDataFrames as layers of a new GeoPackage at ``path`` (a temporary path: the
    caller renames it into place). Layer metadata: IDENTIFIER = the layer's expression;
    ``metadata``: dataset metadata items (``ogrinfo`` lists them, QGIS shows them)."""
    import pyogrio

    from .io_utils import write_failure

    descriptions = descriptions or {}
    try:
        for index, (name, frame) in enumerate(layers.items()):
            # GeoPackage 1.2: what QGIS 3.22's GDAL (3.6) writes itself; 1.4 makes it warn on open
            dataset_options = {"VERSION": "1.2"} if index == 0 else None
            options = {}
            if name in descriptions:
                options = {"IDENTIFIER": descriptions[name], "DESCRIPTION": f"rrsis: {descriptions[name]}"}
            pyogrio.write_dataframe(
                frame, str(path), layer=name, driver="GPKG", geometry_type="Polygon", layer_options=options,
                dataset_options=dataset_options, dataset_metadata=metadata if index == 0 and metadata else None,
            )
    except Exception as exc:  # disk full, permissions changed meanwhile, directory removed, ...
        raise write_failure(path, exc, what="the GeoPackage") from exc
