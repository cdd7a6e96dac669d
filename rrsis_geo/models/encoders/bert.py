"""BERT text encoder, whole or layer range by layer range, with Hugging Face's tensor names.

LAVT and LGCE run the whole encoder once per expression. BTDNet interleaves groups of BERT layers
with the vision stages, so the wrapper also exposes the embedding layer, the attention mask in the
form the layers take, and :meth:`BertTextEncoder.run_layers`. The pooler is never built: no
architecture uses it, and it would hold parameters without gradients.

The network is :mod:`.bert_model`: transformers' ``BertModel`` (post-norm layers, absolute
positions) with the same tensor names, so Hugging Face weight directories such as MiniLM's and
checkpoints written when the encoder came from transformers load unchanged. It is written here
because importing transformers' model code costs ~1 s per process (it imports ``torch._dynamo``);
``tests/models/test_lean_modules.py`` compares it with transformers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Mapping, Optional

import torch
from torch import nn

from ...errors import CheckpointError
from ..options import option
from .bert_model import BertModel, BertSettings, load_bert_weights


class BertTextEncoder(nn.Module):
    """A BERT without pooler; ``forward`` returns the last hidden states ``[B, L, C]``."""

    def __init__(self, bert: BertModel) -> None:
        super().__init__()
        self.bert = bert

    @property
    def hidden_size(self) -> int:
        return int(self.bert.config.hidden_size)

    @property
    def num_layers(self) -> int:
        return int(self.bert.config.num_hidden_layers)

    @property
    def pad_token_id(self) -> int:
        return int(self.bert.config.pad_token_id or 0)

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Embedding-layer output ``[B, L, C]`` (word + position + type, LayerNorm, dropout)."""
        return self.bert.embeddings(input_ids)

    def token_features(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The embedding-layer output without dropout: a stable description of the tokens."""
        return self.bert.embeddings.features(input_ids)

    def layer_mask(self, attention_mask: torch.Tensor) -> torch.Tensor:
        """The attention mask in the form BERT's layers take."""
        return self.bert.layer_mask(attention_mask)

    def run_layers(self, hidden: torch.Tensor, layer_mask: Optional[torch.Tensor], start: int, stop: int) -> torch.Tensor:
        """Apply layers ``start .. stop-1`` to ``hidden``."""
        for layer in self.bert.encoder.layer[start:stop]:
            hidden = layer(hidden, layer_mask)
        return hidden

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.bert(input_ids, attention_mask)


def split_layers(num_layers: int, boundaries: Optional[List[int]] = None) -> List[int]:
    """Layer indices ending each of BERT's four stages, e.g. ``[3, 6, 9, 12]`` for 12 layers.

    ``boundaries`` (from the config) is used when given and valid; otherwise the layers are split
    as evenly as possible (MiniLM-L6: ``[2, 3, 5, 6]``, 4 layers: ``[1, 2, 3, 4]``).
    """
    if boundaries:
        ok = len(boundaries) == 4 and boundaries[-1] == num_layers and all(
            a < b for a, b in zip([0] + boundaries[:-1], boundaries)
        )
        if not ok:
            raise CheckpointError(
                f"text split {boundaries} must be 4 increasing layer indices ending at the encoder's "
                f"{num_layers} layers"
            )
        return list(boundaries)
    if num_layers < 4:
        raise CheckpointError(f"a BERT split into 4 stages needs at least 4 layers, this one has {num_layers}")
    return [-(-num_layers * (i + 1) // 4) for i in range(4)]  # ceil: the larger groups come first


def bert_config(settings: Mapping[str, Any], pretrained_path: Optional[Path]) -> BertSettings:
    """The BERT settings of a ``text`` section: its ``config`` dict, else the pretrained directory's."""
    values = settings.get("config")
    if values:
        if not isinstance(values, Mapping):
            raise CheckpointError("text.config must be a BertConfig dict")
        return BertSettings.from_dict(values)
    if pretrained_path is not None:
        return BertSettings.from_directory(Path(pretrained_path))
    raise CheckpointError("the text section needs either 'config' (a BertConfig dict) or 'pretrained'")


def build_bert(settings: Mapping[str, Any], pretrained_path: Optional[Path] = None, config_path: Optional[Path] = None) -> BertTextEncoder:
    """A BERT encoder from a ``text`` config section.

    ``pretrained_path`` (a Hugging Face model directory) loads its weights, offline; every encoder
    tensor must be in it. ``config_path`` is only used to read the architecture when the section
    has no ``config`` dict.
    """
    kind = option(settings, "type", "bert", where="text")
    if kind != "bert":
        raise CheckpointError(f"text encoder type {kind!r} is not supported; use 'bert'")
    bert = BertModel(bert_config(settings, pretrained_path or config_path))
    if pretrained_path is not None:
        load_bert_weights(bert, Path(pretrained_path))
    return BertTextEncoder(bert)
