"""The interface the architectures use to drive a vision backbone stage by stage."""

from __future__ import annotations

from typing import List, Tuple

import torch
from torch import nn


class VisionEncoder(nn.Module):
    """A backbone split into four stages at strides 4, 8, 16 and 32.

    The architectures fuse language *between* stages (LAVT's PWAM, BTDNet's BSC), so a backbone is
    run one stage at a time: ``stage(0, images)`` then ``stage(i, fused_output_of_stage_i-1)``.
    Features are NCHW at this interface whatever the backbone's own layout (timm's Swin works
    channels-last; the wrapper converts).
    """

    #: channels of the four stage outputs
    channels: Tuple[int, int, int, int]
    #: stride of each stage output relative to the input image
    reductions: Tuple[int, int, int, int] = (4, 8, 16, 32)

    def stage(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """Run stage ``index`` (0..3) on ``x`` (the image for stage 0) -> ``[B, C_index, H/r, W/r]``."""
        raise NotImplementedError

    def stage_modules(self, index: int) -> List[nn.Module]:
        """The modules that stage ``index`` runs (e.g. to freeze the first stages in training)."""
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> List[torch.Tensor]:
        """The four stage outputs without any fusion (for summaries and benchmarks)."""
        features = []
        x = images
        for index in range(4):
            x = self.stage(index, x)
            features.append(x)
        return features
