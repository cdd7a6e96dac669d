"""BERT text encoder (transformers ``BertModel``), whole or layer range by layer range.

LAVT and LGCE run the whole encoder once per expression. BTDNet interleaves groups of BERT layers
with the vision stages, so the wrapper also exposes the embedding layer, the attention mask in the
form the layers take, and :meth:`BertTextEncoder.run_layers`. The pooler is never built: no
architecture uses it, and it would hold parameters without gradients.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, List, Mapping, Optional

import torch
from torch import nn

from ...errors import CheckpointError, DependencyError
from ..options import option


class BertTextEncoder(nn.Module):
    """A ``BertModel`` without pooler; ``forward`` returns the last hidden states ``[B, L, C]``."""

    def __init__(self, bert: nn.Module) -> None:
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
        return self.bert.embeddings(input_ids=input_ids)

    def token_features(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The embedding-layer output without dropout: a stable description of the tokens."""
        emb = self.bert.embeddings
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        # same order of additions as BertEmbeddings.forward, so that the result is bit-identical
        x = emb.word_embeddings(input_ids) + emb.token_type_embeddings(torch.zeros_like(input_ids))
        x = x + emb.position_embeddings(positions)[None]
        return emb.LayerNorm(x)

    def layer_mask(self, attention_mask: torch.Tensor, hidden: torch.Tensor) -> Optional[torch.Tensor]:
        """The attention mask in the form BERT's layers take (as ``BertModel.forward`` builds it)."""
        from transformers.masking_utils import create_bidirectional_mask

        # positional: the keyword is ``input_embeds`` in transformers 5.0 and ``inputs_embeds`` later
        return create_bidirectional_mask(self.bert.config, hidden, attention_mask)

    def run_layers(self, hidden: torch.Tensor, layer_mask: Optional[torch.Tensor], start: int, stop: int) -> torch.Tensor:
        """Apply layers ``start .. stop-1`` to ``hidden``."""
        for layer in self.bert.encoder.layer[start:stop]:
            hidden = layer(hidden, attention_mask=layer_mask)
        return hidden

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


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


def bert_config(settings: Mapping[str, Any], pretrained_path: Optional[Path]) -> Any:
    """The ``BertConfig`` of a ``text`` section: its ``config`` dict, else the pretrained directory's."""
    from transformers import BertConfig

    values = settings.get("config")
    if values:
        if not isinstance(values, Mapping):
            raise CheckpointError("text.config must be a BertConfig dict")
        return BertConfig(**dict(values))
    if pretrained_path is not None:
        return BertConfig.from_pretrained(str(pretrained_path), local_files_only=True)
    raise CheckpointError("the text section needs either 'config' (a BertConfig dict) or 'pretrained'")


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report and progress bar (the unused pooler is reported as
    "unexpected"; real problems are checked below from the loading info)."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


#: the oldest transformers this encoder works with: ``create_bidirectional_mask`` and BERT layers
#: that return a tensor came with 5.0 (tested against 5.0.0 and the pinned version)
MIN_TRANSFORMERS = (5, 0)


def require_transformers(version: Optional[str] = None) -> None:
    """Raise :class:`DependencyError` with an upgrade hint when transformers is older than 5.0."""
    if version is None:
        import transformers

        version = transformers.__version__
    parts = []
    for piece in version.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    if tuple(parts) < MIN_TRANSFORMERS:
        raise DependencyError(
            f"rrsis needs transformers >= {MIN_TRANSFORMERS[0]}.{MIN_TRANSFORMERS[1]} for its BERT encoder, "
            f"but this Python has {version}; upgrade it with: pip install 'transformers>=5'"
        )


def build_bert(settings: Mapping[str, Any], pretrained_path: Optional[Path] = None, config_path: Optional[Path] = None) -> BertTextEncoder:
    """A BERT encoder from a ``text`` config section.

    ``pretrained_path`` (a Hugging Face model directory) loads its weights with
    ``BertModel.from_pretrained``, offline; every encoder tensor must be in it. ``config_path`` is
    only used to read the architecture when the section has no ``config`` dict.
    """
    require_transformers()
    from transformers import BertModel

    kind = option(settings, "type", "bert", where="text")
    if kind != "bert":
        raise CheckpointError(f"text encoder type {kind!r} is not supported; use 'bert'")
    config = bert_config(settings, pretrained_path or config_path)
    if pretrained_path is None:
        return BertTextEncoder(BertModel(config, add_pooling_layer=False))
    try:
        with _quiet_transformers():
            bert, info = BertModel.from_pretrained(
                str(pretrained_path),
                config=config,
                add_pooling_layer=False,
                local_files_only=True,
                output_loading_info=True,
            )
    except (OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"cannot load BERT weights from {pretrained_path}: {exc}") from exc
    missing = [key for key in info.get("missing_keys", []) if not key.startswith("pooler.")]
    mismatched = info.get("mismatched_keys", [])
    if missing or mismatched:
        first = missing[0] if missing else mismatched[0]
        raise CheckpointError(f"BERT weights in {pretrained_path} do not fit the text config (first problem: {first})")
    return BertTextEncoder(bert)
