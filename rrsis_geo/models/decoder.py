"""LAVT's three-step decoder.

Stage 4 is upsampled to stage 3's size, concatenated with it and passed through two 3x3
conv-norm-ReLU blocks; the result is fused the same way with stage 2, then with stage 1; a 1x1
convolution gives two-class logits at 1/4 of the input resolution (upsampling to the input is the
model's job). The hidden width is half of stage 4's channels by default (512 for Swin-B, as LAVT).
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import torch
from torch import nn

from .layers import ConvNormAct, upsample_like


class FuseStep(nn.Sequential):
    """``cat(upsampled coarse, skip)`` -> two 3x3 conv-norm-ReLU blocks."""

    def __init__(self, in_channels: int, out_channels: int, norm: str) -> None:
        super().__init__(ConvNormAct(in_channels, out_channels, 3, norm), ConvNormAct(out_channels, out_channels, 3, norm))


class LAVTDecoder(nn.Module):
    """``[c1, c2, c3, c4]`` stage features -> ``[B, num_classes, H/4, W/4]`` logits."""

    def __init__(self, in_channels: Sequence[int], hidden: Optional[int] = None, norm: str = "batch", num_classes: int = 2) -> None:
        super().__init__()
        c1, c2, c3, c4 = in_channels
        hidden = hidden or c4 // 2
        self.steps = nn.ModuleList(
            [FuseStep(c4 + c3, hidden, norm), FuseStep(hidden + c2, hidden, norm), FuseStep(hidden + c1, hidden, norm)]
        )
        self.classifier = nn.Conv2d(hidden, num_classes, 1)

    def forward(self, features: List[torch.Tensor]) -> torch.Tensor:
        x = features[3]
        for step, skip in zip(self.steps, (features[2], features[1], features[0])):
            x = step(torch.cat([upsample_like(x, skip.shape[-2:]), skip], 1))
        return self.classifier(x)
