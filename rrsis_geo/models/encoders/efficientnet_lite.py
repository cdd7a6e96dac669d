"""EfficientNet-Lite0..4 (Tan & Le, 2019; the TensorFlow "lite" variants) with timm's tensor names.

The network is timm's ``efficientnet_lite*``: a 3x3 stride-2 stem of 32 channels, seven stages of
depthwise-separable (first) and inverted-residual blocks (expansion 6, ReLU6, no
squeeze-excitation, symmetric padding), a 1x1 head of 1280 channels, channels and depths scaled
per variant with timm's rounding. Every tensor has timm's name (``conv_stem``, ``bn1``,
``blocks.S.I.conv_pw`` ...) and ``feature_info`` has timm's form, so checkpoints written when the
encoder came from ``timm.create_model`` load unchanged and compute the same numbers
(``tests/models/test_lean_modules.py`` compares them for every variant). It is written here
because importing timm costs ~1.5 s per process (it imports torchvision, which imports
``torch._dynamo``); other EfficientNets still come from timm.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

#: variant -> (channel multiplier, depth multiplier), as in the TensorFlow reference
LITE_VARIANTS: Dict[str, Tuple[float, float]] = {
    "efficientnet_lite0": (1.0, 1.0),
    "efficientnet_lite1": (1.0, 1.1),
    "efficientnet_lite2": (1.1, 1.2),
    "efficientnet_lite3": (1.2, 1.4),
    "efficientnet_lite4": (1.4, 1.8),
}

# (block kind, repeats, kernel, stride, expansion, channels) per stage
_STAGES = (
    ("ds", 1, 3, 1, 1, 16),
    ("ir", 2, 3, 2, 6, 24),
    ("ir", 2, 5, 2, 6, 40),
    ("ir", 3, 3, 2, 6, 80),
    ("ir", 3, 5, 1, 6, 112),
    ("ir", 4, 5, 2, 6, 192),
    ("ir", 1, 3, 1, 6, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280


def make_divisible(value: float, divisor: int = 8, round_limit: float = 0.9) -> int:
    """Nearest multiple of ``divisor`` (at least ``divisor``), never more than 10 % below ``value``."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < round_limit * value else rounded


def stage_repeats(depth_multiplier: float) -> List[int]:
    """Blocks per stage: ``ceil(repeats x multiplier)``; the first and last stages are not scaled."""
    last = len(_STAGES) - 1
    return [r if i in (0, last) else int(math.ceil(r * depth_multiplier)) for i, (_, r, *_rest) in enumerate(_STAGES)]


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drop the residual branch of whole samples with probability ``rate``."""
    if rate == 0.0 or not training:
        return x
    if rate >= 1.0:
        return x * 0.0
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask.div_(keep)


class BatchNormAct(nn.BatchNorm2d):
    """BatchNorm followed by ReLU6 (or nothing): timm's ``BatchNormAct2d`` with the same tensors."""

    def __init__(self, channels: int, eps: float, act: bool = True) -> None:
        super().__init__(channels, eps=eps)
        self.act = nn.ReLU6(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(super().forward(x))


def _conv(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride, padding=((stride - 1) + (kernel - 1)) // 2, groups=groups, bias=False)


class DepthwiseSeparable(nn.Module):
    """Depthwise conv, BN+ReLU6, pointwise conv, BN (the first block)."""

    FOLD_PAIRS = (("conv_dw", "bn1"), ("conv_pw", "bn2"))  # rrsis_geo.models.fold

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, eps: float, drop_rate: float) -> None:
        super().__init__()
        self.has_skip = stride == 1 and cin == cout
        self.drop_rate = drop_rate
        self.conv_dw = _conv(cin, cin, kernel, stride, groups=cin)
        self.bn1 = BatchNormAct(cin, eps)
        self.conv_pw = _conv(cin, cout, 1)
        self.bn2 = BatchNormAct(cout, eps, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv_pw(self.bn1(self.conv_dw(x))))
        return drop_path(out, self.drop_rate, self.training) + x if self.has_skip else out


class InvertedResidual(nn.Module):
    """Pointwise expansion, depthwise conv, pointwise projection; residual where shapes allow."""

    FOLD_PAIRS = (("conv_pw", "bn1"), ("conv_dw", "bn2"), ("conv_pwl", "bn3"))

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expansion: int, eps: float, drop_rate: float) -> None:
        super().__init__()
        mid = make_divisible(cin * expansion)
        self.has_skip = stride == 1 and cin == cout
        self.drop_rate = drop_rate
        self.conv_pw = _conv(cin, mid, 1)
        self.bn1 = BatchNormAct(mid, eps)
        self.conv_dw = _conv(mid, mid, kernel, stride, groups=mid)
        self.bn2 = BatchNormAct(mid, eps)
        self.conv_pwl = _conv(mid, cout, 1)
        self.bn3 = BatchNormAct(cout, eps, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv_pwl(self.bn2(self.conv_dw(self.bn1(self.conv_pw(x))))))
        return drop_path(out, self.drop_rate, self.training) + x if self.has_skip else out


class EfficientNetLite(nn.Module):
    """The whole classifier network; ``feature_info`` lists the stage ends as timm does."""

    def __init__(self, name: str, *, drop_path_rate: float = 0.0, bn_eps: float = 1e-5, num_classes: int = 1000) -> None:
        super().__init__()
        if name not in LITE_VARIANTS:
            raise ValueError(f"unknown EfficientNet-Lite variant {name!r}; known: {', '.join(LITE_VARIANTS)}")
        width, depth = LITE_VARIANTS[name]
        self.conv_stem = _conv(3, STEM_CHANNELS, 3, 2)
        self.bn1 = BatchNormAct(STEM_CHANNELS, bn_eps)
        repeats = stage_repeats(depth)
        total, index, cin, reduction = sum(repeats), 0, STEM_CHANNELS, 2
        stages: List[nn.Sequential] = []
        self.feature_info: List[Dict[str, Any]] = []
        for stage, ((kind, _, kernel, stride, expansion, channels), count) in enumerate(zip(_STAGES, repeats)):
            cout = make_divisible(channels * width)
            blocks: List[nn.Module] = []
            for i in range(count):
                s = stride if i == 0 else 1
                rate = drop_path_rate * index / total
                if kind == "ds":
                    blocks.append(DepthwiseSeparable(cin, cout, kernel, s, bn_eps, rate))
                else:
                    blocks.append(InvertedResidual(cin, cout, kernel, s, expansion, bn_eps, rate))
                cin, index = cout, index + 1
            reduction *= stride
            stages.append(nn.Sequential(*blocks))
            next_stride: Optional[int] = _STAGES[stage + 1][3] if stage + 1 < len(_STAGES) else None
            if next_stride != 1:  # the last stage at this resolution
                self.feature_info.append(dict(module=f"blocks.{stage}", num_chs=cout, stage=stage + 1, reduction=reduction))
        self.blocks = nn.Sequential(*stages)
        self.conv_head = _conv(cin, HEAD_CHANNELS, 1)
        self.bn2 = BatchNormAct(HEAD_CHANNELS, bn_eps)
        self.classifier = nn.Linear(HEAD_CHANNELS, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """The TensorFlow EfficientNet initialisation (fan-out normal convs, unit BN, uniform head)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                bound = 1.0 / math.sqrt(module.weight.shape[0])
                nn.init.uniform_(module.weight, -bound, bound)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn2(self.conv_head(self.blocks(self.bn1(self.conv_stem(x)))))
        return self.classifier(x.mean((2, 3)))
