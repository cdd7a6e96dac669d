"""LGCE (Yuan et al., TGRS 2024): LAVT plus language-guided cross-scale enhancement.

Between LAVT's fused stage features and its decoder, a shallow high-resolution feature and the
deepest feature are enhanced together:

1. *scale-specific fusion*: the expression's mean word feature (padding excluded) is projected to
   each scale's width and appended as one extra token to that scale's pixel tokens; a Transformer
   block per scale processes pixels + language token;
2. *cross-scale fusion*: the two language tokens are split off, each is aligned by a linear layer
   to the *other* scale's width and appended to that scale's pixel tokens as an intermediary; a
   multi-head self-attention per scale mixes them;
3. the pixel tokens are split off again and replace the two original features for decoding.

Table III ablations (config ``lgce``): ``language_guidance: false`` replaces the mean word
feature by a learned token (the module then ignores the text); ``cross_scale: false`` drops
step 2.

Which shallow feature, and position (issue 14). Section IV-C names the four Swin stage outputs
``F_1..F_4`` and has LGCE take the shallow, *high-resolution* one with ``F_4``; section IV-B
introduces the Transformer block through ViT, whose tokens carry added position embeddings
(eq. 1). The paper presets therefore set ``shallow_stage: 0`` (``F_1``, stride 4, the highest
resolution the encoder has: the small objects the module is for) and ``position_embedding:
learned`` (ViT's learned embedding, one per scale, sized for ``input_size`` and resampled
bilinearly for other sizes, added to the pixel tokens before the scale-specific block; the
language token has none). Both keys are *absent* in earlier checkpoints, which keeps their
layout: ``shallow_stage`` 1 (stride 8; global attention over 64x64 rather than 128x128 tokens at
512 px) and no position embedding (the Swin/EfficientNet features carry position implicitly).
``position_embedding: sine`` (fixed 2-D sine/cosine, no parameters) is offered for any-size use.
"""

from __future__ import annotations

from typing import Any, List, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.init import trunc_normal_

from ..checkpoint_config import DEFAULT_INPUT_SIZE
from ..errors import CheckpointError
from .base import TextState
from .lavt import LAVT, build_lavt_parts
from .layers import flatten_tokens, masked_mean, sine_position_embedding, unflatten_tokens
from .options import option, section
from .registry import PretrainedSelection
from .vit import ViTAttention, ViTBlock


def _heads(dim: int, head_dim: int) -> int:
    """Most heads of about ``head_dim`` channels that divide ``dim``."""
    for heads in range(max(1, dim // head_dim), 0, -1):
        if dim % heads == 0:
            return heads
    return 1


class PreNormSelfAttention(nn.Module):
    """``x + MSA(LN(x))``: the cross-scale fusion attention of one scale."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = ViTAttention(dim, num_heads, qkv_bias=True, attn_drop=dropout, proj_drop=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attn(self.norm(x))


class CrossScaleEnhancement(nn.Module):
    """The LGCE module: ``(shallow, deep, words, mask) -> (shallow', deep')``, NCHW in and out."""

    def __init__(
        self,
        shallow_dim: int,
        deep_dim: int,
        text_dim: int,
        *,
        language_guidance: bool = True,
        cross_scale: bool = True,
        head_dim: int = 32,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        position_embedding: Optional[str] = None,
        grids: Tuple[int, int] = (0, 0),
    ) -> None:
        super().__init__()
        if position_embedding not in (None, "learned", "sine"):
            raise CheckpointError(f"lgce.position_embedding must be null, 'learned' or 'sine', got {position_embedding!r}")
        self.position_embedding = position_embedding
        self.language_guidance = language_guidance
        self.cross_scale = cross_scale
        if not language_guidance:
            # "w/o language guidance": a randomly initialised, learned token replaces the words
            self.language_token = nn.Parameter(torch.zeros(text_dim))
            trunc_normal_(self.language_token, std=0.02)
        self.project_shallow = nn.Linear(text_dim, shallow_dim)
        self.project_deep = nn.Linear(text_dim, deep_dim)
        heads_s, heads_d = _heads(shallow_dim, head_dim), _heads(deep_dim, head_dim)
        block = dict(mlp_ratio=mlp_ratio, qkv_bias=True, proj_drop=dropout, attn_drop=dropout)
        self.block_shallow = ViTBlock(shallow_dim, heads_s, **block)
        self.block_deep = ViTBlock(deep_dim, heads_d, **block)
        if cross_scale:
            self.align_to_deep = nn.Linear(shallow_dim, deep_dim)  # shallow's language token -> deep width
            self.align_to_shallow = nn.Linear(deep_dim, shallow_dim)
            self.fuse_shallow = PreNormSelfAttention(shallow_dim, heads_s, dropout)
            self.fuse_deep = PreNormSelfAttention(deep_dim, heads_d, dropout)
        if position_embedding == "learned":
            # ViT's learned embedding, one per scale, on the grid of the configured input size
            self.grids = tuple(int(g) for g in grids)
            self.position_shallow = nn.Parameter(torch.zeros(1, shallow_dim, self.grids[0], self.grids[0]))
            self.position_deep = nn.Parameter(torch.zeros(1, deep_dim, self.grids[1], self.grids[1]))
            trunc_normal_(self.position_shallow, std=0.02)
            trunc_normal_(self.position_deep, std=0.02)

    def _position(self, x: torch.Tensor, which: str) -> torch.Tensor:
        """``x`` (NCHW) plus its scale's position embedding (unchanged without one)."""
        if self.position_embedding is None:
            return x
        height, width = x.shape[-2:]
        if self.position_embedding == "sine":
            table = sine_position_embedding(height, width, x.shape[1], device=x.device, dtype=x.dtype)
            return x + unflatten_tokens(table[None], height, width)
        table = self.position_shallow if which == "shallow" else self.position_deep
        if table.shape[-2:] != (height, width):
            table = F.interpolate(table, size=(height, width), mode="bilinear", align_corners=False)
        return x + table.to(x.dtype)

    def forward(
        self,
        shallow: torch.Tensor,
        deep: torch.Tensor,
        words: torch.Tensor,
        mask: torch.Tensor,
        sentence: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """``sentence`` (``[B, C_t]``), when given, is the language feature instead of the mean word."""
        (hs, ws), (hd, wd) = shallow.shape[-2:], deep.shape[-2:]
        if self.language_guidance:
            language = masked_mean(words, mask) if sentence is None else sentence
        else:
            language = self.language_token.to(shallow.dtype).expand(shallow.shape[0], -1)
        xs = torch.cat([flatten_tokens(self._position(shallow, "shallow")), self.project_shallow(language)[:, None]], 1)
        xd = torch.cat([flatten_tokens(self._position(deep, "deep")), self.project_deep(language)[:, None]], 1)
        xs, xd = self.block_shallow(xs), self.block_deep(xd)
        if self.cross_scale:
            vis_s, lang_s = xs[:, :-1], xs[:, -1:]
            vis_d, lang_d = xd[:, :-1], xd[:, -1:]
            xs = self.fuse_shallow(torch.cat([vis_s, self.align_to_shallow(lang_d)], 1))
            xd = self.fuse_deep(torch.cat([vis_d, self.align_to_deep(lang_s)], 1))
        return unflatten_tokens(xs[:, :-1], hs, ws), unflatten_tokens(xd[:, :-1], hd, wd)


class LGCE(LAVT):
    """LAVT whose shallow and deepest fused features pass through :class:`CrossScaleEnhancement`."""

    def __init__(self, *args: Any, enhancement: CrossScaleEnhancement, shallow_stage: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.enhancement = enhancement
        self.shallow_stage = shallow_stage

    def enhance(self, features: List[torch.Tensor], text: TextState) -> List[torch.Tensor]:
        shallow, deep = self.enhancement(
            features[self.shallow_stage], features[3], text["words"], text["mask"], text.get("sentence")
        )
        features = list(features)
        features[self.shallow_stage], features[3] = shallow, deep
        return features


def build_lgce(config: Mapping[str, Any], load_pretrained: PretrainedSelection = False) -> LGCE:
    """LGCE from a config dict: LAVT's sections plus ``lgce`` (``language_guidance``,
    ``cross_scale``, ``shallow_stage``, ``position_embedding``, ``head_dim``, ``mlp_ratio``,
    ``dropout``)."""
    parts = build_lavt_parts(config, load_pretrained)
    settings = section(config, "lgce", required=False)
    shallow_stage = int(option(settings, "shallow_stage", 1))
    if shallow_stage not in (0, 1, 2):
        raise CheckpointError(f"lgce.shallow_stage must be 0, 1 or 2 (stage 3 is the deep one), got {shallow_stage}")
    channels = parts["vision_encoder"].channels
    reductions = parts["vision_encoder"].reductions
    size = int(config.get("input_size") or DEFAULT_INPUT_SIZE)
    enhancement = CrossScaleEnhancement(
        channels[shallow_stage],
        channels[3],
        parts["text_encoder"].hidden_size,
        language_guidance=bool(option(settings, "language_guidance", True)),
        cross_scale=bool(option(settings, "cross_scale", True)),
        head_dim=int(option(settings, "head_dim", 32)),
        mlp_ratio=float(option(settings, "mlp_ratio", 4.0)),
        dropout=float(option(settings, "dropout", 0.0)),
        position_embedding=option(settings, "position_embedding", None),
        grids=(max(1, size // reductions[shallow_stage]), max(1, size // reductions[3])),
    )
    frozen = parts.pop("text_frozen")
    return LGCE(**parts, text_frozen=frozen, enhancement=enhancement, shallow_stage=shallow_stage)
