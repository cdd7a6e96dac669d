"""BERT (Devlin et al., 2019) as transformers' ``BertModel`` computes it, with its tensor names.

Post-norm encoder layers (self-attention, residual, LayerNorm; feed-forward, residual,
LayerNorm), absolute learned positions, token type 0, no pooler. Settings come from a
``BertConfig`` dict or a Hugging Face model directory's ``config.json``; weights from the
directory's ``model.safetensors`` (or ``pytorch_model.bin``), whose names it shares.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import CheckpointError
from .weights import read_state_dict

_ACTIVATIONS: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class BertSettings:
    """The fields of transformers' ``BertConfig`` this encoder uses (same names and defaults)."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "BertSettings":
        """Settings from a ``BertConfig`` dict; keys of other BERT variants are refused."""
        if values.get("position_embedding_type", "absolute") != "absolute":
            raise CheckpointError(f"BERT position_embedding_type {values['position_embedding_type']!r} is not supported; use 'absolute'")
        if values.get("is_decoder") or values.get("add_cross_attention"):
            raise CheckpointError("a decoder BERT (is_decoder / add_cross_attention) cannot encode expressions")
        known = {f.name for f in dataclasses.fields(cls)}
        settings = cls(**{k: v for k, v in values.items() if k in known and v is not None})
        if settings.hidden_act not in _ACTIVATIONS:
            raise CheckpointError(f"BERT hidden_act {settings.hidden_act!r} is not supported; use one of {', '.join(_ACTIVATIONS)}")
        if settings.hidden_size % settings.num_attention_heads:
            raise CheckpointError(
                f"BERT hidden_size {settings.hidden_size} is not a multiple of its {settings.num_attention_heads} attention heads"
            )
        return settings

    @classmethod
    def from_directory(cls, directory: Path) -> "BertSettings":
        """Settings from a Hugging Face model directory's ``config.json``."""
        path = Path(directory) / "config.json"
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot read the BERT config {path}: {exc}") from exc
        if values.get("model_type", "bert") != "bert":
            raise CheckpointError(f"{directory} holds a {values['model_type']!r} model; the text encoder is a BERT")
        return cls.from_dict(values)


class BertEmbeddings(nn.Module):
    """Word + token type (0) + position embeddings, LayerNorm, dropout."""

    def __init__(self, config: BertSettings) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def features(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The embeddings before dropout (sums in transformers' order, so the bits agree)."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(torch.zeros_like(input_ids))
        x = x + self.position_embeddings(positions)[None]
        return self.LayerNorm(x)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.features(input_ids))


class BertSelfAttention(nn.Module):
    def __init__(self, config: BertSettings) -> None:
        super().__init__()
        self.heads = config.num_attention_heads
        self.head_size = config.hidden_size // config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)

    def forward(self, hidden: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        batch, length, channels = hidden.shape

        def heads(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch, length, self.heads, self.head_size).transpose(1, 2)

        out = F.scaled_dot_product_attention(
            heads(self.query(hidden)), heads(self.key(hidden)), heads(self.value(hidden)), attn_mask=mask,
            dropout_p=self.dropout.p if self.training else 0.0, scale=self.head_size ** -0.5,
        )
        return out.transpose(1, 2).reshape(batch, length, channels)


class BertResidualOutput(nn.Module):
    """``LayerNorm(dropout(dense(x)) + residual)``: the output of either sub-layer."""

    def __init__(self, width: int, config: BertSettings) -> None:
        super().__init__()
        self.dense = nn.Linear(width, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class BertAttention(nn.Module):
    def __init__(self, config: BertSettings) -> None:
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertResidualOutput(config.hidden_size, config)

    def forward(self, hidden: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        return self.output(self.self(hidden, mask), hidden)


class BertIntermediate(nn.Module):
    def __init__(self, config: BertSettings) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = _ACTIVATIONS[config.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(x))


class BertLayer(nn.Module):
    def __init__(self, config: BertSettings) -> None:
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertResidualOutput(config.intermediate_size, config)

    def forward(self, hidden: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        attended = self.attention(hidden, mask)
        return self.output(self.intermediate(attended), attended)


class BertEncoder(nn.Module):
    def __init__(self, config: BertSettings) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))


class BertModel(nn.Module):
    """``BertModel(config, add_pooling_layer=False)``: ``forward`` gives the last hidden states."""

    pooler = None  # never built (see the module docstring of .bert)

    def __init__(self, config: BertSettings) -> None:
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        """BERT's initialisation: normal(0, initializer_range), zero biases and padding row."""
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, 0.0, std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
        if isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    @staticmethod
    def layer_mask(attention_mask: torch.Tensor) -> torch.Tensor:
        """``[B, 1, 1, L]`` booleans (True: attend), the form the layers take."""
        return attention_mask.bool()[:, None, None, :]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.embeddings(input_ids)
        mask = self.layer_mask(attention_mask)
        for layer in self.encoder.layer:
            hidden = layer(hidden, mask)
        return hidden


def _hf_name(key: str) -> str:
    """A Hugging Face BERT tensor name as this encoder has it: without the ``bert.`` prefix of
    task models, LayerNorm ``gamma``/``beta`` (the original BERT release) as ``weight``/``bias``."""
    key = key[len("bert."):] if key.startswith("bert.") else key
    if ".LayerNorm." in key:
        key = key.replace(".gamma", ".weight").replace(".beta", ".bias")
    return key


def load_bert_weights(bert: BertModel, directory: Path) -> None:
    """Load a Hugging Face BERT directory's weights; every tensor of ``bert`` must be there."""
    files = [Path(directory) / name for name in WEIGHT_FILES if (Path(directory) / name).is_file()]
    if not files:
        sharded = any(Path(directory).glob("*.index.json"))
        raise CheckpointError(
            f"cannot load BERT weights from {directory}: it holds neither {' nor '.join(WEIGHT_FILES)}"
            + (" (sharded weights are not supported)" if sharded else "")
        )
    state = {_hf_name(k): v for k, v in read_state_dict(files[0]).items()}
    expected = bert.state_dict()
    for key, value in expected.items():
        if key not in state or tuple(state[key].shape) != tuple(value.shape):
            raise CheckpointError(f"BERT weights in {directory} do not fit the text config (first problem: {key})")
    bert.load_state_dict({k: state[k] for k in expected})
