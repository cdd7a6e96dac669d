"""Batch norms folded into the convolutions before them, for inference.

In eval mode a BatchNorm after a convolution is an affine map per channel, so it can be merged
into the convolution's weights and bias: one pass over the activations instead of two. Only
pairs this project's modules declare (``FOLD_PAIRS``: attribute names of a convolution and the
norm after it) and ``nn.Sequential`` runs of ``Conv2d`` then ``BatchNorm2d`` are folded; a norm
with an activation inside (``BatchNormAct``) leaves that activation in its place.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def _foldable(conv: nn.Module, norm: nn.Module) -> bool:
    return isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d) and norm.track_running_stats


def _without_norm(norm: nn.Module) -> nn.Module:
    """What stays where the norm was: its activation (``BatchNormAct``), else nothing."""
    return getattr(norm, "act", None) or nn.Identity()


def fold_batch_norms(model: nn.Module) -> int:
    """Fold every declared conv + BatchNorm pair of ``model`` (in eval mode); returns how many.

    The model is changed in place and must not be trained afterwards.
    """
    if model.training:
        raise ValueError("batch norms are folded for inference only: call model.eval() first")
    folded = 0
    for module in list(model.modules()):
        for conv_name, norm_name in getattr(module, "FOLD_PAIRS", ()):
            conv, norm = getattr(module, conv_name), getattr(module, norm_name)
            if _foldable(conv, norm):
                setattr(module, conv_name, fuse_conv_bn_eval(conv, norm))
                setattr(module, norm_name, _without_norm(norm))
                folded += 1
        if isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                if _foldable(module[i], module[i + 1]):
                    module[i] = fuse_conv_bn_eval(module[i], module[i + 1])
                    module[i + 1] = _without_norm(module[i + 1])
                    folded += 1
    return folded
