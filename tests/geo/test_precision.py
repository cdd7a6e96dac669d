"""The model's arithmetic: bf16 autocast only where the hardware has it, unless asked for."""

from __future__ import annotations

import types
from pathlib import Path

import pytest
import torch

import rrsis_geo
from rrsis_geo import cpu
from rrsis_geo.errors import InputError
from rrsis_geo.segmenter import resolve_precision

CPU = torch.device("cpu")
DEFAULT = Path(__file__).resolve().parents[2] / "resources" / "models" / "default"


def test_auto_follows_the_processor(monkeypatch):
    monkeypatch.setattr(cpu, "native_bf16", lambda flags=None: True)
    assert resolve_precision("auto", CPU) == torch.bfloat16
    monkeypatch.setattr(cpu, "native_bf16", lambda flags=None: False)
    assert resolve_precision("auto", CPU) == torch.float32  # emulated bf16 is slower than float32
    assert resolve_precision("bf16", CPU) == torch.bfloat16  # asked for: done
    assert resolve_precision("fp32", CPU) == torch.float32
    with pytest.raises(InputError, match="precision 'half' must be one of auto, bf16, fp32"):
        resolve_precision("half", CPU)


def test_the_option_reaches_the_model_and_the_plan(tmp_path, red_checkpoint):
    from geo_testdata import red_square_scene, write_geotiff

    path = write_geotiff(tmp_path / "s.tif", red_square_scene(64, 64, slice(10, 30), slice(10, 30)))
    seg = rrsis_geo.load_model(red_checkpoint, device="cpu", precision="fp32")
    assert seg.precision == "fp32" and seg.dtype == torch.float32
    plan = rrsis_geo.plan(path, "red", segmenter=seg)
    assert plan.precision == "fp32" and plan.to_dict()["precision"] == "fp32"
    seg = rrsis_geo.load_model(red_checkpoint, device="cpu", precision="bf16")
    with seg.autocast():
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")
    out = rrsis_geo.predict(path, "red", segmenter=seg)
    assert out.attrs["rrsis"]["plan"]["precision"] == "bf16" and len(out) == 1


def test_bf16_keeps_the_text_and_the_layers_that_read_the_image_in_float32():
    # the shipped default's layout: bf16 alone moved water on the Dubai sample by 0.018 IoU
    from rrsis_geo.models.encoders.efficientnet import EfficientNetEncoder
    from rrsis_geo.models.encoders.efficientnet_lite import EfficientNetLite

    seg = rrsis_geo.load_model(DEFAULT, device="cpu", precision="bf16")
    state = seg.encode("cars along the road").state
    assert state and all(v.dtype in (torch.float32, torch.bool, torch.long) for v in state.values())
    encoder = EfficientNetEncoder(EfficientNetLite("efficientnet_lite0")).eval()
    dtypes = {}
    for name in ("conv_stem", "blocks.0", "blocks.1", "blocks.2"):
        encoder.get_submodule(name).register_forward_hook(lambda m, i, out, name=name: dtypes.__setitem__(name, out.dtype))
    images = torch.rand(1, 3, 64, 64)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        x = encoder.stage(1, encoder.stage(0, images))
    assert dtypes == {"conv_stem": torch.float32, "blocks.0": torch.float32, "blocks.1": torch.bfloat16, "blocks.2": torch.bfloat16}
    assert x.dtype == torch.bfloat16
    with torch.inference_mode():  # without autocast: float32 throughout, the same layers
        assert encoder.stage(0, images).dtype == torch.float32


def _source(low: float, high: float, dtype: str) -> types.SimpleNamespace:
    """A stand-in for the engine's RasterSource: what the normaliser reads of it."""
    return types.SimpleNamespace(stretch=((low, high),) * 3, read_dtype=dtype)


def _expected(raw: torch.Tensor, seg, low: float, high: float) -> torch.Tensor:
    mean, std = torch.tensor(seg.mean).view(1, 3, 1, 1), torch.tensor(seg.std).view(1, 3, 1, 1)
    return (((raw - low) / (high - low)).clamp(0, 1) - mean) / std


@pytest.fixture(scope="module")
def cpu_default():
    return rrsis_geo.load_model(DEFAULT, device="cpu", precision="bf16")


def test_a_cpu_model_runs_channels_last_and_the_engine_feeds_it_so(cpu_default):
    # channels-last measured faster on a CPU in both precisions (README, Benchmarks); the engine
    # normalises straight into that layout, never in place
    from rrsis_geo.engine import _Normaliser

    seg = cpu_default
    assert seg.channels_last
    weight = next(p for p in seg.model.parameters() if p.ndim == 4)
    assert weight.is_contiguous(memory_format=torch.channels_last)
    raw = torch.rand(2, 3, 32, 32) * 255
    kept = raw.clone()
    x = _Normaliser(_source(10.0, 210.0, "float32"), seg)(raw)
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(raw, kept), "the reader's buffer must not be normalised in place"
    assert torch.allclose(x, _expected(raw, seg, 10.0, 210.0), atol=1e-5)


def test_the_normaliser_keeps_its_buffers_for_the_run(cpu_default):
    # the next batch is written where this one was, and gives exactly what fresh buffers give:
    # a shorter last batch of other values too
    from rrsis_geo.engine import _Normaliser

    seg, source = cpu_default, _source(10.0, 210.0, "float32")
    normalise = _Normaliser(source, seg)
    raw = torch.rand(2, 3, 32, 32) * 255
    x = normalise(raw)
    last = torch.rand(1, 3, 32, 32) * 255
    y = normalise(last)
    assert y.data_ptr() == x.data_ptr()
    assert y.shape == (1, 3, 32, 32) and y.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(y, _Normaliser(source, seg)(last)), "kept buffers give what fresh ones give"
    assert torch.allclose(y, _expected(last, seg, 10.0, 210.0), atol=1e-5)
    from_bytes = normalise(raw.to(torch.uint8)).clone()
    assert torch.equal(from_bytes, normalise(raw.to(torch.uint8).float()))
    # a model that takes NCHW gets the NCHW stage itself, with no second buffer or copy
    nchw = types.SimpleNamespace(device=seg.device, mean=seg.mean, std=seg.std, channels_last=False)
    flat_normalise = _Normaliser(source, nchw)
    flat = flat_normalise(raw)
    assert flat.is_contiguous() and torch.allclose(flat, _expected(raw, seg, 10.0, 210.0), atol=1e-5)
    assert flat.data_ptr() == flat_normalise._stage.data_ptr() and flat_normalise._out is None


def test_the_normaliser_clamps_only_where_values_can_leave_0_1(cpu_default):
    from rrsis_geo.engine import _Normaliser

    seg = cpu_default
    assert _Normaliser(_source(10.0, 210.0, "float32"), seg).needs_clamp
    assert _Normaliser(_source(10.0, 210.0, "uint8"), seg).needs_clamp  # a narrower 8-bit stretch
    # 8-bit values under the full-range stretch cannot leave 0..1: no clamp pass, the same values
    unclamped = _Normaliser(_source(0.0, 255.0, "uint8"), seg)
    assert not unclamped.needs_clamp
    every = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(1, 3, 16, 16)
    z = unclamped(every)
    assert torch.allclose(z, _expected(every.float(), seg, 0.0, 255.0), rtol=0, atol=1e-6)
    assert torch.equal(z, z.clamp(unclamped.low, unclamped.high))
