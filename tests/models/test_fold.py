"""Batch norms folded into their convolutions for prediction: same outputs, no norm left."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import rrsis_geo
from rrsis_geo.models.fold import fold_batch_norms
from rrsis_geo.models.layers import ConvNormAct

DEFAULT = Path(__file__).resolve().parents[2] / "resources" / "models" / "default"


def _randomise_norms(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)


def test_folded_efficientnet_and_decoder_units_compute_the_same():
    from rrsis_geo.models.encoders.efficientnet import EfficientNetEncoder
    from rrsis_geo.models.encoders.efficientnet_lite import EfficientNetLite

    torch.manual_seed(0)
    model = nn.ModuleDict({"encoder": EfficientNetEncoder(EfficientNetLite("efficientnet_lite0")),
                           "unit": ConvNormAct(24, 8, 3, "batch")})
    _randomise_norms(model)
    model.eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = [model["encoder"].stage(0, images)]
        before.append(model["unit"](before[0]))
        # stem 1 + the depthwise-separable block 2 + 15 inverted residuals x 3 + the decoder unit 1
        assert fold_batch_norms(model) == 1 + 2 + 15 * 3 + 1
    # every BatchNorm is gone (the ReLU6 of a BatchNormAct stays in its place)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    with torch.no_grad():
        after = [model["encoder"].stage(0, images)]
        after.append(model["unit"](after[0]))
    for a, b in zip(before, after):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_folding_is_for_inference_only():
    with pytest.raises(ValueError, match="inference only"):
        fold_batch_norms(ConvNormAct(3, 4, 3, "batch").train())


def test_a_loaded_model_carries_no_batch_norm():
    seg = rrsis_geo.load_model(DEFAULT, device="cpu", precision="fp32")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in seg.model.modules())
