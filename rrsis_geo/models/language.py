"""What the fusion modules see of the expression: its words, or slots made from its meaning.

LAVT's pixel-word attention attends over the expression's word features. With a frozen sentence
encoder (MiniLM-L6, trained so that paraphrases land close together) that lets a model learn the
identity of the few strings it was trained on instead of their meaning: "houses" shares no token
with "building". Config section ``language`` (absent: ``tokens: words``, the paper behaviour):

* ``tokens: words`` -- the text encoder's word features and attention mask, as LAVT.
* ``tokens: sentence`` -- the pooled sentence embedding (mean over the real words, L2-normalised:
  exactly the sentence-transformers embedding MiniLM was trained to produce) is mapped by one
  linear layer to ``slots`` language tokens (LayerNorm'd), which replace the words as PWAM's keys
  and values. Everything downstream is then a smooth function of the sentence embedding, so a
  paraphrase that lands near a trained phrasing is read like it. Several slots, not one: PWAM
  instance-normalises its attention output over the pixels, and one key would give every pixel
  the same (hence zero after normalisation) language feature.
* ``noise`` -- training only: the sentence embedding is moved by Gaussian noise of this relative
  size (0.5 keeps a cosine of about 0.9 to the clean one, the spread of real paraphrases) and
  renormalised, so the model answers a neighbourhood of each phrasing, not a point.

The text state then also carries ``sentence`` (scaled to unit variance per channel), which LGCE
uses as its language token in place of the mean word feature.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError
from .base import TextState
from .layers import masked_mean
from .options import choice, option

LANGUAGE_TOKENS = ("words", "sentence")


def sentence_embedding(words: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean-pooled, L2-normalised sentence embedding ``[B, C]`` of word features ``[B, L, C]``."""
    return F.normalize(masked_mean(words.float(), mask), dim=-1).to(words.dtype)


class SentenceSlots(nn.Module):
    """``[B, L, C]`` words + mask -> a text state whose keys are ``slots`` tokens from the sentence."""

    def __init__(self, text_dim: int, slots: int = 8, noise: float = 0.0) -> None:
        super().__init__()
        if slots < 2:
            raise CheckpointError(f"language.slots must be at least 2, got {slots}")
        self.slots = slots
        self.noise = noise
        self.expand = nn.Linear(text_dim, slots * text_dim)
        self.norm = nn.LayerNorm(text_dim)

    def forward(self, words: torch.Tensor, mask: torch.Tensor) -> TextState:
        sentence = sentence_embedding(words, mask)
        if self.training and self.noise > 0:
            # relative size: a unit vector plus noise of expected norm `noise`
            jitter = torch.randn_like(sentence) * (self.noise / math.sqrt(sentence.shape[-1]))
            sentence = F.normalize(sentence + jitter, dim=-1)
        batch, dim = sentence.shape
        scaled = sentence * math.sqrt(dim)  # unit variance per channel, as the word features
        tokens = self.norm(self.expand(scaled).view(batch, self.slots, dim))
        slot_mask = torch.ones(batch, self.slots, dtype=mask.dtype, device=mask.device)
        return {"words": tokens, "mask": slot_mask, "sentence": scaled}


def build_language(settings: Optional[Mapping[str, Any]], text_dim: int) -> Optional[SentenceSlots]:
    """The module for config section ``language``; None for ``tokens: words`` (the words as they are)."""
    settings = settings or {}
    if choice(settings, "tokens", LANGUAGE_TOKENS, "words", where="language section") == "words":
        return None
    noise = float(option(settings, "noise", 0.0))
    if not 0.0 <= noise <= 2.0:
        raise CheckpointError(f"language.noise must be between 0 and 2, got {noise}")
    return SentenceSlots(text_dim, int(option(settings, "slots", 8)), noise)
