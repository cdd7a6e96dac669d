"""Training losses, chosen by the keys of ``model.forward_train``'s output.

* LAVT / LGCE (``{"logits"}``): cross-entropy on the two-class logits, as LAVT (whose code
  weights background 0.9 and target 1.1: ``loss.class_weights``), plus ``dice_weight`` x the soft
  Dice loss of the target probability per sample (0: off, as the papers). Dice balances a small
  target against its background without moving the decision threshold, as class weights do
  (they made every category over-segment: issue 21).
* BTDNet (``{"logits", "recon_pred", "recon_target", "recon_mask"}``), the paper's eq. (10)-(14):
  CE on ``logits``, the (background, target) pair of the Fg-Bg predictor that inference takes the
  higher of; + ``fg_bg_weight`` (0.6) x the foreground/background supervision, in which each map
  meets its *own* target (binary cross-entropy of the target map against the mask and of the
  background map against its complement); + ``recon_weight`` (0.1) x masked MSE of the
  reconstructed token features against their (stop-gradient) targets. With ``fg_bg_weight: 0``
  (Table VII) the inference head still learns from the main term.
* BTDNet checkpoints built with the legacy ``btdnet.mask_head`` also return ``mask_logits``; their
  loss is the earlier one, kept so that such runs resume unchanged: CE(``mask_logits``)
  + ``fg_bg_weight`` CE(``logits``) + ``recon_weight`` MSE.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

BTDNET_KEYS = ("logits", "recon_pred", "recon_target", "recon_mask")


def segmentation_ce(logits: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Pixel-wise cross-entropy of ``[B, 2, h, w]`` logits against a ``[B, H, W]`` 0/1 target.

    Logits at another resolution than the target are resized bilinearly first (the contract
    says input resolution, so this is a safety net, not the normal path). Computed in float32
    whatever the autocast dtype.
    """
    if logits.shape[-2:] != target.shape[-2:]:
        logits = F.interpolate(logits.float(), size=target.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(logits.float(), target.long(), weight=weight)


def foreground_background_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Each map of ``[B, 2, h, w]`` (background, target) logits against its own 0/1 target.

    BCE(target map, mask) + BCE(background map, 1 - mask), each averaged over pixels; float32.
    """
    if logits.shape[-2:] != target.shape[-2:]:
        logits = F.interpolate(logits.float(), size=target.shape[-2:], mode="bilinear", align_corners=False)
    truth = target.float()
    background = F.binary_cross_entropy_with_logits(logits[:, 0].float(), 1.0 - truth)
    foreground = F.binary_cross_entropy_with_logits(logits[:, 1].float(), truth)
    return foreground + background


def soft_dice(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Mean over samples of ``1 - (2|P∩T| + s) / (|P| + |T| + s)`` on the target probability of
    ``[B, 2, h, w]`` logits against a ``[B, H, W]`` 0/1 target (an empty target asks for an empty
    prediction); float32."""
    if logits.shape[-2:] != target.shape[-2:]:
        logits = F.interpolate(logits.float(), size=target.shape[-2:], mode="bilinear", align_corners=False)
    probability = logits.float().softmax(dim=1)[:, 1].flatten(1)
    truth = target.float().flatten(1)
    overlap = (probability * truth).sum(1)
    return (1.0 - (2.0 * overlap + smooth) / (probability.sum(1) + truth.sum(1) + smooth)).mean()


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
        dice_weight: float = 0.0,
    ):
        super().__init__()
        weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights is not None else None
        self.register_buffer("class_weights", weight, persistent=False)
        self.fg_bg_weight = float(fg_bg_weight)
        self.recon_weight = float(recon_weight)
        self.dice_weight = float(dice_weight)

    def forward(self, outputs: Mapping[str, torch.Tensor], target: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """``(total loss, {part name: detached value})`` for one batch."""
        weight = self.class_weights
        if "recon_pred" in outputs:
            missing = [k for k in BTDNET_KEYS if k not in outputs]
            if missing:
                raise KeyError(f"forward_train returned recon_pred but not {missing}")
            recon = masked_mse(outputs["recon_pred"], outputs["recon_target"].detach(), outputs["recon_mask"])
            if "mask_logits" in outputs:  # legacy layout with the extra mask head
                mask_ce = segmentation_ce(outputs["mask_logits"], target, weight)
                fg_bg_ce = segmentation_ce(outputs["logits"], target, weight)
                total = mask_ce + self.fg_bg_weight * fg_bg_ce + self.recon_weight * recon
                return total, {"mask_ce": mask_ce.detach(), "fg_bg_ce": fg_bg_ce.detach(), "recon_mse": recon.detach()}
            main = segmentation_ce(outputs["logits"], target, weight)
            fg_bg = foreground_background_bce(outputs["logits"], target)
            total = main + self.fg_bg_weight * fg_bg + self.recon_weight * recon
            return total, {"ce": main.detach(), "fg_bg_bce": fg_bg.detach(), "recon_mse": recon.detach()}
        if "logits" not in outputs:
            raise KeyError(f"forward_train must return at least 'logits'; got {sorted(outputs)}")
        ce = segmentation_ce(outputs["logits"], target, weight)
        if not self.dice_weight:
            return ce, {"ce": ce.detach()}
        dice = soft_dice(outputs["logits"], target)
        return ce + self.dice_weight * dice, {"ce": ce.detach(), "dice": dice.detach()}
