"""The model's arithmetic: bf16 autocast only where the hardware has it, unless asked for."""

from __future__ import annotations

import pytest
import torch

import rrsis_geo
from rrsis_geo import cpu
from rrsis_geo.errors import InputError
from rrsis_geo.segmenter import resolve_precision

CPU = torch.device("cpu")


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
