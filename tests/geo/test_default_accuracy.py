"""The shipped model's accuracy on the shipped samples, against predictors that do not look, or
do not read.

Every check computes, in the test, the trivial predictors it must beat:

* **whole image**: every valid pixel is the target;
* **darker / brighter half**: the pixels below / above the scene's median brightness (a rule that
  ignores the text: on the Dubai sample the darker half already scores 0.58 IoU on vegetation);
* **text-blind**: the model's own mask for *another* category's word (what a model that ignored
  the expression would return).

and then a threshold between the best of them and the model card's figure (the card is measured
on these files too: `resources/models/default/README.md`). All three samples are validation
images: no training crop came from them.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from shapely.ops import unary_union

import rrsis_geo

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "resources" / "sample"
DUBAI, DUBAI_LABELS = SAMPLES / "dubai_sample.tif", SAMPLES / "dubai_sample.labels.tif"
MUNICH, MUNICH_BOXES = SAMPLES / "munich_street_sample.tif", SAMPLES / "munich_street_sample.vehicles.geojson"
MINSK, MINSK_BOXES = SAMPLES / "minsk_street_sample.tif", SAMPLES / "minsk_street_sample.vehicles.geojson"

CODES = {"building": 1, "road": 3, "vegetation": 4, "water": 5}  # dubai_sample.labels.tif (class_N tags)
#: expression -> the category it asks for; held-out words (in no training expression) marked
DUBAI_EXPRESSIONS = {
    "building": "building", "houses": "building", "structures": "building",  # structures: held out
    "vegetation": "vegetation", "greenery": "vegetation",  # greenery: held out
    "water": "water", "road": "road",
}


@pytest.fixture(scope="module", autouse=True)
def default_model():
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("RRSIS_CHECKPOINT", raising=False)  # the embedded default, as a fresh install
        yield


@pytest.fixture(scope="module")
def dubai(tmp_path_factory):
    """Per expression the model's mask on the Dubai sample; the labels; the brightness halves."""
    folder = tmp_path_factory.mktemp("dubai")
    texts = list(DUBAI_EXPRESSIONS)
    rrsis_geo.predict(DUBAI, texts, output=folder / "o.gpkg", mask_out=folder / "m.tif", device="cpu")
    with rasterio.open(folder / "m.tif") as masks, rasterio.open(DUBAI_LABELS) as labels, rasterio.open(DUBAI) as image:
        predicted = {text: masks.read(i + 1) == 1 for i, text in enumerate(texts)}
        truth = labels.read(1)
        brightness = image.read().astype(np.float32).mean(0)
    valid = truth > 0
    median = np.median(brightness[valid])
    halves = {"darker half": brightness < median, "brighter half": brightness >= median}
    return predicted, truth, valid, halves


def iou(pred: np.ndarray, target: np.ndarray, valid: np.ndarray) -> float:
    pred, target = pred & valid, target & valid
    union = np.count_nonzero(pred | target)
    return np.count_nonzero(pred & target) / union if union else 0.0


def precision(pred: np.ndarray, target: np.ndarray, valid: np.ndarray) -> float:
    marked = np.count_nonzero(pred & valid)
    return np.count_nonzero(pred & target & valid) / marked if marked else 0.0


def baselines(category: str, dubai) -> dict:
    """IoU of each trivial predictor for ``category`` on the Dubai sample."""
    predicted, truth, valid, halves = dubai
    target = truth == CODES[category]
    out = {"whole image": iou(valid, target, valid)}
    out.update({name: iou(half, target, valid) for name, half in halves.items()})
    others = [t for t, c in DUBAI_EXPRESSIONS.items() if c != category]
    out["text-blind"] = max(iou(predicted[t], target, valid) for t in others)
    return out


#: the model card's IoU on this sample (resources/models/default/README.md, "On the samples")
CARD_IOU = {"building": 0.65, "vegetation": 0.50, "water": 0.64, "road": 0.36}
#: goals of issue 21 the shipped model does not meet yet, kept visible: strict, so that the day a
#: model meets one, its marker must go
GOAL_NOT_MET = "a goal of issue 21 the shipped model does not meet yet (model card: Use and limits)"
#: what round 3 lost against the model before it, kept visible: strict, so that it must go once fixed
VEGETATION_REGRESSION = pytest.mark.xfail(strict=True, reason=(
    "round 3 of issue 21 under-segments vegetation (recall 0.51 on this sample): 0.50 IoU, below the "
    "text-blind darker half (0.58) that the model before it beat with 0.74 (model card: Use and limits)"))


@pytest.mark.parametrize("category", [c if c != "vegetation" else pytest.param(c, marks=VEGETATION_REGRESSION)
                                      for c in sorted(CARD_IOU)])
def test_each_category_beats_every_trivial_predictor(category, dubai):
    predicted, truth, valid, _ = dubai
    score = iou(predicted[category], truth == CODES[category], valid)
    best = max(baselines(category, dubai).values())
    # between the best predictor that does not look or read, and the card's figure
    assert score >= best + 0.5 * (CARD_IOU[category] - best), (category, score, baselines(category, dubai))


def test_water_is_not_painted_over_the_golf_course(dubai):
    predicted, truth, valid, _ = dubai
    assert precision(predicted["water"], truth == CODES["water"], valid) >= 0.5


@pytest.mark.parametrize("paraphrase, word", [("houses", "building"), ("structures", "building"),
                                               pytest.param("greenery", "vegetation", marks=VEGETATION_REGRESSION)])
def test_a_paraphrase_scores_like_its_training_word(paraphrase, word, dubai):
    predicted, truth, valid, _ = dubai
    target = truth == CODES[word]
    assert iou(predicted[paraphrase], target, valid) >= 0.85 * iou(predicted[word], target, valid)
    assert iou(predicted[paraphrase], target, valid) > max(baselines(word, dubai).values())


# ------------------------------------------------------------------------------- vehicles
def run_vehicles(path: Path, texts, folder: Path) -> dict:
    from rrsis_geo.vectorize import layer_names

    out = folder / "v.gpkg"
    rrsis_geo.predict(path, texts, output=out, device="cpu")
    return {t: gpd.read_file(out, layer=name) for t, name in zip(texts, layer_names(texts))}


def covered(polygons: gpd.GeoDataFrame, boxes: gpd.GeoDataFrame) -> np.ndarray:
    """Share of each box's area the polygons cover."""
    found = unary_union(list(polygons.geometry)) if len(polygons) else None
    if found is None:
        return np.zeros(len(boxes))
    return (boxes.geometry.intersection(found).area / boxes.geometry.area).to_numpy()


def box_iou(polygons: gpd.GeoDataFrame, boxes: gpd.GeoDataFrame) -> float:
    found, truth = unary_union(list(polygons.geometry)), unary_union(list(boxes.geometry))
    union = found.union(truth).area
    return found.intersection(truth).area / union if union else 0.0


@pytest.fixture(scope="module")
def munich(tmp_path_factory):
    layers = run_vehicles(MUNICH, ["car", "automobiles", "vehicles", "building", "road"], tmp_path_factory.mktemp("m"))
    return layers, gpd.read_file(MUNICH_BOXES)


def test_cars_are_found_at_their_labelled_positions(munich):
    layers, boxes = munich
    cars = boxes[boxes["class"] == "car"]
    assert layers["car"].crs.to_epsg() == 32632
    assert (covered(layers["car"], cars) >= 0.5).mean() >= 0.7  # most cars, mostly covered (card: 0.91)
    # the polygons are cars, not the street: most of their area lies inside a box
    inside = layers["car"].geometry.intersection(unary_union(list(boxes.geometry))).area.sum()
    assert inside / layers["car"].geometry.area.sum() >= 0.5
    # text-blind: what "building" and "road" mark covers the cars far worse
    blind = max((box_iou(layers[t], cars) for t in ("building", "road") if len(layers[t])), default=0.0)
    assert box_iou(layers["car"], cars) >= max(0.35, blind + 0.2)  # card: 0.58


def test_a_held_out_word_finds_the_cars_about_as_well_as_the_training_word(munich):
    layers, boxes = munich
    cars = boxes[boxes["class"] == "car"]
    assert box_iou(layers["automobiles"], cars) >= 0.75 * box_iou(layers["car"], cars)  # card: 0.55 / 0.58
    assert (covered(layers["automobiles"], cars) >= 0.5).mean() >= 0.7
    assert (covered(layers["vehicles"], boxes) >= 0.5).mean() >= 0.7  # the wider class, the minibus included


@pytest.fixture(scope="module")
def minsk(tmp_path_factory):
    layers = run_vehicles(MINSK, ["car", "bus", "vehicle", "light-duty vehicle"], tmp_path_factory.mktemp("k"))
    return layers, gpd.read_file(MINSK_BOXES)


def test_car_finds_the_cars_of_another_city(minsk):
    layers, boxes = minsk
    cars = boxes[boxes["class"] == "car"]
    # card: 77 % of the cars at least half covered, IoU 0.44 with their boxes; marking every pixel
    # would cover them all with an IoU under 0.05
    assert (covered(layers["car"], cars) >= 0.5).mean() >= 0.6
    assert box_iou(layers["car"], cars) >= 0.15
    assert (covered(layers["vehicle"], cars) >= 0.5).mean() >= 0.6


@pytest.mark.xfail(strict=True, reason=GOAL_NOT_MET + ": 'car' covers 40 % of one of the three buses (none half: "
                   "round 1 half covered one)")
def test_car_marks_no_bus(minsk):
    layers, boxes = minsk
    buses = boxes[boxes["class"] == "bus"]
    assert len(buses) == 3
    assert covered(layers["car"], buses).max() < 0.25  # no bus is taken for a car
    assert covered(layers["light-duty vehicle"], buses).max() < 0.25


@pytest.mark.xfail(strict=True, reason=GOAL_NOT_MET + ": 'bus' half covers one bus of three (crop recall of bus 7 %)")
def test_bus_marks_the_buses_and_not_the_cars(minsk):
    layers, boxes = minsk
    buses, cars = boxes[boxes["class"] == "bus"], boxes[boxes["class"] == "car"]
    assert (covered(layers["bus"], buses) >= 0.5).sum() >= 2
    assert covered(layers["bus"], cars).mean() < 0.2
