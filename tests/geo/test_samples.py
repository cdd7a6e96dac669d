"""The shipped sample scenes: georeferenced as their README says, vehicle boxes inside the strip."""

from __future__ import annotations

import json
from pathlib import Path

import rasterio
from rasterio.windows import from_bounds

SAMPLES = Path(__file__).resolve().parents[2] / "resources" / "sample"


def test_dubai_sample_is_a_1m_utm40_scene():
    with rasterio.open(SAMPLES / "dubai_sample.tif") as ds:
        assert ds.crs.to_epsg() == 32640 and ds.count == 3 and (ds.width, ds.height) == (896, 896)
        assert ds.res == (1.0, 1.0)


def test_munich_sample_boxes_sit_on_vehicles():
    with rasterio.open(SAMPLES / "munich_street_sample.tif") as ds:
        assert ds.crs.to_epsg() == 32632 and (ds.width, ds.height) == (1284, 377)
        assert 0.11 < ds.res[0] < 0.14 and "CC-BY 3.0" in ds.tags()["attribution"]
        boxes = json.loads((SAMPLES / "munich_street_sample.vehicles.geojson").read_text())
        assert len(boxes["features"]) == 34 and {f["properties"]["class"] for f in boxes["features"]} <= {"car", "bus", "minibus", "truck"}
        for feature in boxes["features"]:
            xs, ys = zip(*feature["geometry"]["coordinates"][0])
            window = from_bounds(min(xs), min(ys), max(xs), max(ys), ds.transform).round_offsets().round_lengths()
            assert 0 <= window.col_off and window.col_off + window.width <= ds.width + 1
            assert 0 <= window.row_off and window.row_off + window.height <= ds.height + 1
            assert 2.5 < max(window.width, window.height) * ds.res[0] < 14  # a car's to a bus's length
