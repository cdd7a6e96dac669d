"""Dense supervision: every category of a crop taught in one forward pass (training only).

One referring triplet teaches one category per forward pass. The auxiliary head reads the
decoder's last features (the input of its classifier, stride 4), projects each pixel into the
text encoder's sentence-embedding space and scores it against each category's fixed embedding
(cosine, a learned temperature and bias): pixel-text similarity, so that the visual features
learn to tell every category of the crop apart, in the space the expressions live in. The loss
is binary cross-entropy plus soft Dice per category, over the categories known for the crop
(:class:`training.datasets.crops.TrainingCrops`). The head is not part of the shipped model.
"""

from __future__ import annotations

import math
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import nn


class DenseCategoryHead(nn.Module):
    """``[B, C_f, h, w]`` features -> ``[B, K, h, w]`` category logits (see module docstring)."""

    def __init__(self, in_channels: int, embeddings: torch.Tensor) -> None:
        super().__init__()
        self.project = nn.Conv2d(in_channels, embeddings.shape[1], 1)
        self.register_buffer("embeddings", F.normalize(embeddings.float(), dim=1))
        self.log_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        self.bias = nn.Parameter(torch.tensor(-2.0))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pixels = F.normalize(self.project(features).float(), dim=1)
        cosine = torch.einsum("bchw,kc->bkhw", pixels, self.embeddings)
        return cosine * self.log_scale.exp() + self.bias


class FeatureTap:
    """Keeps the input of ``module`` (a forward pre-hook), e.g. the decoder's classifier."""

    def __init__(self, module: nn.Module) -> None:
        self.value: Optional[torch.Tensor] = None
        self.handle = module.register_forward_pre_hook(self._keep)

    def _keep(self, module: nn.Module, inputs: tuple) -> None:
        self.value = inputs[0]

    def take(self) -> torch.Tensor:
        value, self.value = self.value, None
        if value is None:
            raise RuntimeError("the tapped module did not run in this forward pass")
        return value

    def remove(self) -> None:
        self.handle.remove()


def dense_loss(logits: torch.Tensor, targets: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """BCE + soft Dice of ``[B, K, h, w]`` logits against ``[B, K, H, W]`` 0/1 targets, over the
    (sample, category) pairs where ``known`` ``[B, K]`` holds (0 when there are none)."""
    if not bool(known.any()):
        return logits.sum() * 0.0
    if logits.shape[-2:] != targets.shape[-2:]:
        logits = F.interpolate(logits, size=targets.shape[-2:], mode="bilinear", align_corners=False)
    logits, truth = logits[known], targets[known].float()  # [N, H, W]
    bce = F.binary_cross_entropy_with_logits(logits, truth)
    probability = logits.sigmoid()
    overlap = (probability * truth).flatten(1).sum(1)
    total = probability.flatten(1).sum(1) + truth.flatten(1).sum(1)
    dice = 1.0 - (2 * overlap + 1.0) / (total + 1.0)
    return bce + dice.mean()


@torch.no_grad()
def category_embeddings(model: nn.Module, tokenizer, texts: List[str], max_tokens: int) -> torch.Tensor:
    """The model's own sentence embedding of each text (its frozen text encoder), ``[K, C]``."""
    from rrsis_geo.models import tokenize
    from rrsis_geo.models.language import sentence_embedding

    tokens = tokenize(tokenizer, texts, max_tokens, warn=False)
    device = next(model.parameters()).device
    was_training = model.text_encoder.training
    model.text_encoder.eval()
    try:
        mask = tokens.attention_mask.to(device)
        words = model.text_encoder(tokens.input_ids.to(device), mask).float()
    finally:
        model.text_encoder.train(was_training)
    return sentence_embedding(words, mask).cpu()
