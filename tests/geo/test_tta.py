"""Test-time flips (``--tta``): each tile and its three flips, mapped back and averaged."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import torch

import rrsis_geo
from geo_testdata import red_square_scene, write_geotiff

DEFAULT = Path(__file__).resolve().parents[2] / "resources" / "models" / "default"


def test_flips_are_mapped_back_before_the_mean():
    seg = rrsis_geo.load_model(DEFAULT, device="cpu", precision="fp32")
    text = seg.encode("cars")
    images = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        views = [seg.probabilities(images, text)]
        views += [seg.probabilities(images.flip(d), text).flip(d) for d in ((-1,), (-2,), (-2, -1))]
        plain = seg.probabilities(images, text)
        flipped = seg.probabilities(images, text, tta=True)
    assert not torch.allclose(views[0], views[1], atol=1e-3)  # the model is not flip-invariant: the test can fail
    torch.testing.assert_close(flipped, torch.stack(views).mean(0), rtol=0, atol=1e-6)
    torch.testing.assert_close(plain, views[0], rtol=0, atol=0)


def test_the_option_runs_four_model_calls_per_batch_and_is_planned(tmp_path, red_checkpoint):
    scene = write_geotiff(tmp_path / "s.tif", red_square_scene(64, 64, slice(10, 30), slice(10, 30)))
    seg = rrsis_geo.load_model(red_checkpoint, device="cpu")
    calls = []
    segment = seg._segment_fn
    seg._segment_fn = lambda *args: calls.append(args[0].shape[0]) or segment(*args)
    plain = rrsis_geo.predict(scene, "red", segmenter=seg, output=tmp_path / "plain.gpkg")
    plain_calls, calls[:] = len(calls), []
    out = rrsis_geo.predict(scene, "red", segmenter=seg, output=tmp_path / "tta.gpkg", tta=True)
    assert plain_calls >= 1 and len(calls) == 4 * plain_calls
    assert out.attrs["rrsis"]["plan"]["tta"] is True and plain.attrs["rrsis"]["plan"]["tta"] is False
    # the red model reads each pixel alone, so its flips agree: the same polygon either way
    written = gpd.read_file(tmp_path / "tta.gpkg")
    assert len(written) == len(plain) == 1 and written.geometry[0].equals(plain.geometry[0])
