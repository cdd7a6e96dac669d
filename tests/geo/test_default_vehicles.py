"""The embedded default on the Munich street sample: cars at their labelled boxes, in any wording.

The sample (``resources/sample/munich_street_sample.tif``) is a validation image of the combined
data set: no training crop came from it. Its 34 labelled boxes (33 cars, 1 minibus) are the ground
truth; "automobiles" is a held-out word (never in a training expression).
"""

from pathlib import Path

import geopandas as gpd
import pytest
from shapely.ops import unary_union

import rrsis_geo

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "resources" / "sample" / "munich_street_sample.tif"
BOXES = REPO / "resources" / "sample" / "munich_street_sample.vehicles.geojson"
EXPRESSIONS = ["car", "automobiles", "vehicles", "building"]


@pytest.fixture(scope="module")
def munich(tmp_path_factory):
    """One run of the default over the sample, read back from its GeoPackage, and the labels."""
    out = tmp_path_factory.mktemp("munich") / "munich.gpkg"
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("RRSIS_CHECKPOINT", raising=False)  # the embedded default, as a fresh install
        rrsis_geo.predict(SAMPLE, EXPRESSIONS, output=out, device="cpu")
    layers = {e: gpd.read_file(out, layer=e.replace(" ", "_")) for e in EXPRESSIONS}
    return layers, gpd.read_file(BOXES)


def _iou(polygons: gpd.GeoDataFrame, boxes: gpd.GeoDataFrame) -> float:
    found, truth = unary_union(list(polygons.geometry)), unary_union(list(boxes.geometry))
    union = found.union(truth).area
    return found.intersection(truth).area / union if union else 0.0


def _recall(polygons: gpd.GeoDataFrame, boxes: gpd.GeoDataFrame, cover: float = 0.25) -> float:
    """Share of the labelled boxes that predictions cover for at least ``cover`` of their area."""
    found = unary_union(list(polygons.geometry))
    return float((boxes.geometry.intersection(found).area / boxes.geometry.area >= cover).mean())


def test_cars_are_found_at_their_labelled_positions(munich):
    layers, boxes = munich
    cars, labelled = layers["car"], boxes[boxes["class"] == "car"]
    assert cars.crs.to_epsg() == 32632 and len(cars) > 0
    assert _recall(cars, labelled) >= 0.7
    # and the polygons are cars, not the street: most of their area is inside a box
    inside = cars.geometry.intersection(unary_union(list(boxes.geometry))).area.sum()
    assert inside / cars.geometry.area.sum() >= 0.5
    assert _iou(cars, labelled) >= 0.35


def test_a_held_out_word_finds_the_cars_about_as_well_as_the_training_word(munich):
    layers, boxes = munich
    labelled = boxes[boxes["class"] == "car"]
    word, paraphrase = _iou(layers["car"], labelled), _iou(layers["automobiles"], labelled)
    assert paraphrase >= 0.8 * word, (word, paraphrase)
    assert _recall(layers["automobiles"], labelled) >= 0.7
    assert _recall(layers["vehicles"], boxes) >= 0.7  # the wider class, minibus included


def test_asking_for_what_the_strip_lacks_finds_little(munich):
    layers, boxes = munich
    # a street strip at 0.12 m: no building is labelled, and "building" must not return the cars
    buildings = layers["building"]
    if len(buildings):
        on_cars = buildings.geometry.intersection(unary_union(list(boxes.geometry))).area.sum()
        assert on_cars / unary_union(list(boxes.geometry)).area < 0.2
