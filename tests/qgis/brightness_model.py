"""``test-brightness``: a model architecture whose output is known, for the plugin tests.

Importing this module registers it, in the test process (to save checkpoints) and in the worker
process, which imports it through ``$RRSIS_EXTENSIONS`` (see tests/qgis/conftest.py).
"""

from __future__ import annotations

import time

import torch
from torch import nn

from rrsis_geo.models import ReferringSegmentationModel, register_model


class BrightnessModel(ReferringSegmentationModel):
    """Target where the pixel is bright: logit = gain * (mean(R, G, B) - 0.5).

    ``delay_s`` makes each batch take that long, for cancel tests.
    """

    def __init__(self, delay_s: float = 0.0) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(40.0))
        self.delay_s = float(delay_s)

    def encode_text(self, input_ids, attention_mask):
        return {"tokens": attention_mask.float().sum(dim=1, keepdim=True)}

    def segment(self, images, text):
        if self.delay_s:
            time.sleep(self.delay_s)
        target = self.gain * (images.mean(dim=1, keepdim=True) - 0.5)
        return torch.cat([-target, target], dim=1)


@register_model("test-brightness")
def build(config, load_pretrained=False):
    return BrightnessModel(config.get("delay_s", 0.0))
