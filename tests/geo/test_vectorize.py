"""Areas in square metres for any CRS, and GeoPackage layer names."""

import numpy as np
import pyproj
import pytest
import shapely
from shapely.geometry import box
from shapely.geometry.polygon import orient

from rrsis_geo.vectorize import AreaMeter, layer_names


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
