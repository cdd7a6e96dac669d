"""Swin Transformer from timm, run stage by stage.

timm's Swin works channels-last: ``patch_embed`` returns ``[B, H, W, C]`` and each
``SwinTransformerStage`` (patch merging first, then its blocks) maps NHWC to NHWC. This wrapper
converts at the stage boundaries so that the architectures see NCHW, and drops the classifier
and final norm, which no architecture uses (they would hold parameters without gradients).

Input sizes: the model is built for ``input_size`` with ``strict_img_size=False``, so any size
that is a multiple of 32 works. Where a stage's feature map is not a multiple of the window (Swin-B
window 12 at 512 px gives 128/64/32/16), timm pads each block's input on the bottom/right to a
multiple of the window and crops afterwards, as the original Swin segmentation code does, and the
shifted-window mask is built for the padded size on every forward (``dynamic_mask``). Windows larger
than a stage's map at ``input_size`` are clamped to the map by timm at build time.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping

import torch
from torch import nn

from ...errors import CheckpointError
from ..options import int_list, option
from .base import VisionEncoder
from .weights import load_strict, read_state_dict

#: settings passed through to ``timm.create_model`` when present in the vision config
_TIMM_KEYS = ("embed_dim", "depths", "num_heads", "window_size", "patch_size", "mlp_ratio")


class SwinEncoder(VisionEncoder):
    """The patch embedding and four stages of a timm ``SwinTransformer``."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        if len(backbone.layers) != 4:
            raise CheckpointError(f"a Swin encoder needs 4 stages, this one has {len(backbone.layers)}")
        self.patch_embed = backbone.patch_embed
        self.stages = backbone.layers
        self.channels = tuple(int(info["num_chs"]) for info in backbone.feature_info)  # type: ignore[assignment]
        patch = int(self.patch_embed.patch_size[0])
        self.reductions = tuple(patch * 2**i for i in range(4))  # type: ignore[assignment]

    def stage_modules(self, index: int) -> List[nn.Module]:
        return ([self.patch_embed] if index == 0 else []) + [self.stages[index]]

    def stage(self, index: int, x: torch.Tensor) -> torch.Tensor:
        if index == 0:
            x = self.patch_embed(x)  # NCHW image -> NHWC tokens
        else:
            x = x.permute(0, 2, 3, 1)  # NCHW -> NHWC (free when x came from this wrapper)
        x = self.stages[index](x)
        return x.permute(0, 3, 1, 2)  # NHWC -> NCHW view


def timm_swin_kwargs(settings: Mapping[str, Any], input_size: int) -> Dict[str, Any]:
    """Keyword arguments for ``timm.create_model`` from a ``vision`` config section."""
    kwargs: Dict[str, Any] = {
        "img_size": int(input_size),
        "strict_img_size": False,
        "num_classes": 0,
        "drop_path_rate": float(option(settings, "drop_path_rate", 0.0)),
    }
    for key in _TIMM_KEYS:
        if key in settings and settings[key] is not None:
            kwargs[key] = int_list(settings, key, where="vision") if key in ("depths", "num_heads") else settings[key]
    return kwargs


def build_swin(settings: Mapping[str, Any], input_size: int, pretrained_path=None) -> SwinEncoder:
    """A Swin encoder from a ``vision`` config section (``name`` = timm model name).

    ``pretrained_path`` is a local timm/original Swin weights file; it is filtered by timm's own
    Swin checkpoint filter (old layouts, relative-position tables for another window size) and must
    then match every tensor of the backbone.
    """
    import timm
    from timm.models.swin_transformer import checkpoint_filter_fn

    name = str(option(settings, "name", where="vision"))
    try:
        backbone = timm.create_model(name, pretrained=False, **timm_swin_kwargs(settings, input_size))
    except (RuntimeError, ValueError, TypeError) as exc:
        raise CheckpointError(f"cannot build the Swin encoder {name!r}: {exc}") from exc
    if pretrained_path is not None:
        state = checkpoint_filter_fn(read_state_dict(pretrained_path), backbone)
        load_strict(backbone, state, str(pretrained_path), ignore=("head.",))
    return SwinEncoder(backbone)
