"""The model contract every rrsis architecture follows.

``model(images[B,3,H,W] float, input_ids[B,L] long, attention_mask[B,L]) -> logits[B,2,H,W]``,
channel 0 = background, channel 1 = target, at input resolution (as LAVT).

Architectures subclass :class:`ReferringSegmentationModel` and split the forward pass in two so
that the sliding-window engine encodes each expression once per scene instead of once per tile:

* :meth:`encode_text` does everything that depends on the text only and returns a
  :data:`TextState` (a flat dict of tensors, batch first);
* :meth:`segment` does the rest, given images and a text state whose batch is either the
  images' batch or 1 (then it is broadcast).

Any plain ``nn.Module`` with the three-argument ``forward`` also works with the engine; it is
then called with the token ids repeated per tile.
"""

from __future__ import annotations

from typing import Dict

import torch
from torch import nn

TextState = Dict[str, torch.Tensor]


class ReferringSegmentationModel(nn.Module):
    """Base class of the architectures in :mod:`rrsis_geo.models`."""

    #: number of output classes (background, target)
    num_classes: int = 2

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> TextState:
        """Encode what depends on the expression alone (cached by the engine per expression)."""
        raise NotImplementedError

    def segment(self, images: torch.Tensor, text: TextState) -> torch.Tensor:
        """Two-class logits ``[B, 2, H, W]`` for ``images`` given an encoded expression."""
        raise NotImplementedError

    def forward(
        self, images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        return self.segment(images, self.encode_text(input_ids, attention_mask))

    def forward_train(
        self, images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> Dict[str, torch.Tensor]:
        """Outputs the training losses need; at least ``{"logits": ...}``."""
        return {"logits": self(images, input_ids, attention_mask)}


def expand_text_state(text: TextState, batch: int) -> TextState:
    """Broadcast a text state of batch 1 to ``batch`` (a view, no copy)."""
    out: TextState = {}
    for key, value in text.items():
        if value.shape[0] == batch:
            out[key] = value
        elif value.shape[0] == 1:
            out[key] = value.expand(batch, *value.shape[1:])
        else:
            raise ValueError(f"text state {key!r} has batch {value.shape[0]}, expected 1 or {batch}")
    return out
