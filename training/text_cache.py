"""The frozen text encoder, run once per distinct expression instead of once per training step.

With ``text.frozen`` the text encoder's output for an expression never changes during training
(eval mode: no dropout), so the training loop can look it up. What is kept depends on what the
model reads of it (:mod:`rrsis_geo.models.language`):

* ``tokens: sentence``: only the pooled, normalised sentence embedding ``[C]``, handed to the
  model as one word with a one-element mask; mean-pooling one word and normalising a unit vector
  give the same embedding back, so the model computes exactly what it computes from the ids;
* ``tokens: words``: the word features ``[L, C]`` and the attention mask.

Models with a training forward of their own (BTDNet reconstructs the expression's tokens) need
the ids and are not cached.
"""

from __future__ import annotations

from typing import Dict, List, Optional

import torch
from torch import nn

from rrsis_geo.errors import InputError
from rrsis_geo.models.base import ReferringSegmentationModel, TextState
from rrsis_geo.models.language import SentenceSlots, sentence_embedding


def can_cache(model: nn.Module, frozen: List[str]) -> Optional[str]:
    """None when ``model``'s text can be cached, else why not (for the config error)."""
    if "text_encoder" not in frozen:
        return "the text encoder is trained (set text.frozen: true, or train.cache_text: false)"
    if type(model).forward_train is not ReferringSegmentationModel.forward_train:
        return f"{type(model).__name__} trains with the token ids themselves (set train.cache_text: false)"
    if not hasattr(model, "language") or not hasattr(model, "segment"):
        return f"{type(model).__name__} has no text state to cache (set train.cache_text: false)"
    return None


class TextCache:
    """Text-encoder outputs of every sample of a data set, by sample index."""

    def __init__(self, words: torch.Tensor, mask: torch.Tensor, sentence: bool) -> None:
        self.words = words  # [N, L, C] (L = 1 for sentence models)
        self.mask = mask  # [N, L]
        self.sentence = sentence

    @classmethod
    @torch.no_grad()
    def build(cls, model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, batch: int = 256) -> "TextCache":
        """Encode each distinct row of ``input_ids`` once (on the model's device, float32)."""
        if input_ids is None:
            raise InputError("train.cache_text needs a tokenised data set")
        device = next(model.parameters()).device
        unique, inverse = torch.unique(torch.cat([input_ids, attention_mask], 1), dim=0, return_inverse=True)
        length = input_ids.shape[1]
        sentence = isinstance(getattr(model, "language", None), SentenceSlots)
        was_training = model.text_encoder.training
        model.text_encoder.eval()
        outputs: List[torch.Tensor] = []
        try:
            for start in range(0, unique.shape[0], batch):
                ids = unique[start : start + batch, :length].to(device)
                mask = unique[start : start + batch, length:].to(device)
                words = model.text_encoder(ids, mask).float()
                outputs.append(sentence_embedding(words, mask)[:, None] if sentence else words)
        finally:
            model.text_encoder.train(was_training)
        words = torch.cat(outputs)[inverse].cpu()
        mask = torch.ones(words.shape[:2], dtype=attention_mask.dtype) if sentence else attention_mask.clone()
        return cls(words, mask, sentence)

    @property
    def distinct(self) -> int:
        return int(torch.unique(self.words.flatten(1), dim=0).shape[0])

    def lookup(self, indices: torch.Tensor, device: torch.device) -> Dict[str, torch.Tensor]:
        """``{"words", "mask"}`` of the samples at ``indices``, as the text encoder would give them."""
        return {"words": self.words[indices].to(device, non_blocking=True), "mask": self.mask[indices].to(device, non_blocking=True)}


def text_state(model: nn.Module, words: torch.Tensor, mask: torch.Tensor) -> TextState:
    """What ``model.encode_text`` makes of the text encoder's output ``words`` / ``mask``."""
    language = getattr(model, "language", None)
    if language is None:
        return {"words": words, "mask": mask}
    return language(words, mask)
