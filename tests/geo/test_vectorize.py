"""Areas in square metres for any CRS, a strip's components, and GeoPackage layer names."""

import numpy as np
import pyproj
import pytest
import shapely
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from rasterio.features import shapes
from scipy import ndimage
from shapely.geometry import box
from shapely.geometry.polygon import orient

from rrsis_geo.vectorize import AreaMeter, _components, layer_names


def geodesic_area(geom, crs) -> float:
    """Reference: the polygon densified, moved to lon/lat and measured on the ellipsoid."""
    crs = pyproj.CRS.from_user_input(crs)
    geom = shapely.segmentize(geom, max(geom.length / 400, 1e-9))
    if not crs.is_geographic:
        tf = pyproj.Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True)
        geom = shapely.transform(geom, lambda c: np.column_stack(tf.transform(c[:, 0], c[:, 1])))
    area, _ = crs.get_geod().geometry_area_perimeter(orient(geom, 1.0))
    return abs(area)


@pytest.mark.parametrize(
    "crs,x,y,size",
    [
        ("EPSG:32640", 510000.0, 2790000.0, 15.0),  # UTM, a building
        ("EPSG:32640", 300000.0, 2790000.0, 15.0),  # far from the central meridian
        ("EPSG:3857", 1113194.9, 8399737.9, 40.0),  # Web Mercator at 60 N: areas x4 on the map
        ("EPSG:2229", 6400000.0, 1900000.0, 100.0),  # US survey feet
        ("EPSG:4326", 55.3, 25.2, 2e-4),  # degrees
        ("EPSG:4326", 10.0, 65.0, 5e-4),
        ("EPSG:3857", 1113194.9, 8399737.9, 20000.0),  # 20 km: measured exactly
        ("EPSG:4326", 10.0, 65.0, 0.3),
    ],
)
def test_areas_are_geodesic_square_metres(crs, x, y, size):
    square = box(x, y, x + size, y + size)
    holed = square.difference(box(x + size / 4, y + size / 4, x + size / 2, y + size / 2))
    meter = AreaMeter(pyproj.CRS.from_user_input(crs))
    got = meter.areas(np.array([square, holed], dtype=object))
    assert got[0] == pytest.approx(geodesic_area(square, crs), rel=2e-6)
    assert got[1] == pytest.approx(geodesic_area(holed, crs), rel=2e-6)
    assert meter(square) == pytest.approx(got[0])


def test_no_crs_has_no_area():
    meter = AreaMeter(None)
    assert not meter.known and np.isnan(meter(box(0, 0, 1, 1)))


def test_layer_names_are_sanitised_and_unique():
    names = layer_names(["Building along the road!", "building along  the road", "3 trees", "", "é"])
    assert names == ["building_along_the_road", "building_along_the_road_2", "e_3_trees", "expression", "expression_2"]
    assert all(len(n) <= 48 for n in layer_names(["x" * 200]))


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.bool_, st.tuples(st.integers(1, 24), st.integers(1, 24))),
    st.integers(0, 10_000),
    st.integers(0, 2**32 - 1),
)
def test_a_strip_is_traced_on_its_marked_box_exactly_as_on_the_whole_strip(mask, row0, seed):
    probs = np.random.default_rng(seed).random(mask.shape, dtype=np.float32)
    found = _components(row0, probs, mask)
    # the reference: label, sum and trace the whole strip
    labels, count = ndimage.label(mask)
    if count == 0:
        assert found is None
        return
    pieces, first, last = found
    labels = labels.astype(np.int32)
    sums = np.bincount(labels.ravel(), weights=probs.ravel().astype(np.float64), minlength=count + 1)
    traced = {}
    for geojson, label in shapes(labels, mask=labels > 0, connectivity=4, transform=Affine.translation(0, row0)):
        traced.setdefault(int(label), []).append(shapely.geometry.shape(geojson))
    assert np.array_equal(first, labels[0]) and np.array_equal(last, labels[-1])
    # in the same order too: it is the order of the GeoPackage's features
    assert list(pieces) == list(traced) and sorted(pieces) == list(range(1, count + 1))
    for label, piece in pieces.items():
        assert piece.prob_sum == sums[label] and piece.pixels == (labels == label).sum()
        assert shapely.to_wkb(piece.polygons).tolist() == shapely.to_wkb(traced[label]).tolist()
