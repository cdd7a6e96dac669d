"""Training losses, chosen by the keys of ``model.forward_train``'s output.

* LAVT / LGCE (``{"logits"}``): cross-entropy on the two-class logits, as LAVT (whose code
  weights background 0.9 and target 1.1: ``loss.class_weights``).
* BTDNet (``{"logits", "mask_logits", "recon_pred", "recon_target", "recon_mask"}``):
  CE(main head ``mask_logits``) + 0.6 CE(foreground/background predictor ``logits``)
  + 0.1 masked MSE(reconstructed object phrase features vs. their targets), the weights of the
  BTDNet paper.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

BTDNET_KEYS = ("mask_logits", "recon_pred", "recon_target", "recon_mask")


def segmentation_ce(logits: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Pixel-wise cross-entropy of ``[B, 2, h, w]`` logits against a ``[B, H, W]`` 0/1 target.

    Logits at another resolution than the target are resized bilinearly first (the contract
    says input resolution, so this is a safety net, not the normal path). Computed in float32
    whatever the autocast dtype.
    """
    if logits.shape[-2:] != target.shape[-2:]:
        logits = F.interpolate(logits.float(), size=target.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(logits.float(), target.long(), weight=weight)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the positions where ``mask`` ``[B, L]`` is true (0 if none)."""
    per_position = (pred.float() - target.float()).pow(2).mean(dim=-1)  # [B, L]
    weights = mask.to(per_position.dtype)
    return (per_position * weights).sum() / weights.sum().clamp_min(1.0)


class ReferringSegmentationLoss(nn.Module):
    """The loss of each architecture, dispatched on the output keys (see module docstring)."""

    def __init__(
        self,
        class_weights: Optional[Sequence[float]] = None,
        fg_bg_weight: float = 0.6,
        recon_weight: float = 0.1,
    ):
        super().__init__()
        weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights is not None else None
        self.register_buffer("class_weights", weight, persistent=False)
        self.fg_bg_weight = float(fg_bg_weight)
        self.recon_weight = float(recon_weight)

    def forward(self, outputs: Mapping[str, torch.Tensor], target: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """``(total loss, {part name: detached value})`` for one batch."""
        weight = self.class_weights
        if "mask_logits" in outputs:
            missing = [k for k in BTDNET_KEYS + ("logits",) if k not in outputs]
            if missing:
                raise KeyError(f"forward_train returned mask_logits but not {missing}")
            mask_ce = segmentation_ce(outputs["mask_logits"], target, weight)
            fg_bg_ce = segmentation_ce(outputs["logits"], target, weight)
            recon = masked_mse(outputs["recon_pred"], outputs["recon_target"].detach(), outputs["recon_mask"])
            total = mask_ce + self.fg_bg_weight * fg_bg_ce + self.recon_weight * recon
            parts = {"mask_ce": mask_ce.detach(), "fg_bg_ce": fg_bg_ce.detach(), "recon_mse": recon.detach()}
            return total, parts
        if "logits" not in outputs:
            raise KeyError(f"forward_train must return at least 'logits'; got {sorted(outputs)}")
        ce = segmentation_ce(outputs["logits"], target, weight)
        return ce, {"ce": ce.detach()}
