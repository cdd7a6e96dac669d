"""Models kept loaded between runs (the warm worker's and batch workers' cache)."""

import os
import shutil

import pytest

import rrsis_geo
from geo_testdata import red_square_scene, write_geotiff
from rrsis_geo.model_cache import ModelCache
from rrsis_geo.options import PredictOptions


def test_a_model_is_loaded_once_per_checkpoint_device_and_precision(red_checkpoint):
    cache = ModelCache(size=2)
    options = PredictOptions(checkpoint=red_checkpoint, device="cpu")
    first = cache.load(options)
    assert cache.load(options) is first and cache.loads == 1
    fp32 = cache.load(options.replace(precision="fp32"))
    assert fp32 is not first and cache.loads == 2
    assert cache.find(options.replace(device="auto", precision="bf16")) is fp32  # the text side: any will do
    cache.load(options.replace(precision="bf16"))  # a third: the least recently used one goes
    assert cache.load(options.replace(precision="fp32")) is fp32 and cache.loads == 3
    assert cache.load(options) is not first and cache.loads == 4


def test_the_memory_format_option_reaches_the_loaded_model(red_checkpoint):
    cache = ModelCache(size=3)
    options = PredictOptions(checkpoint=red_checkpoint, device="cpu")
    auto = cache.load(options)
    contiguous = cache.load(options.replace(memory_format="contiguous"))
    assert contiguous is not auto and cache.loads == 2
    assert auto.channels_last and not contiguous.channels_last  # auto: channels-last on a CPU
    assert cache.load(options.replace(memory_format="channels-last")) is not auto  # asked, not chosen
    assert options.replace(memory_format="channels-last").model_settings()["channels_last"] is True


def test_a_checkpoint_rewritten_in_place_is_loaded_again(red_checkpoint, tmp_path):
    copy = shutil.copytree(red_checkpoint, tmp_path / "ckpt")
    cache = ModelCache()
    options = PredictOptions(checkpoint=copy, device="cpu")
    first = cache.load(options)
    weights = copy / "model.safetensors"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert cache.load(options) is not first and cache.loads == 2
    with pytest.raises(ValueError):
        ModelCache(size=0)


def test_predict_takes_its_model_from_the_cache(red_checkpoint, tmp_path):
    scene = write_geotiff(tmp_path / "scene.tif", red_square_scene(64, 64, slice(16, 40), slice(20, 44)))
    cache = ModelCache()
    for _ in range(2):
        gdf = rrsis_geo.predict(scene, ["red"], checkpoint=red_checkpoint, device="cpu", load=cache.load)
        assert len(gdf) >= 1
    assert cache.loads == 1
