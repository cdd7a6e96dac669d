"""BTDNet's target-background twin-stream decoder and its phrase reconstruction head.

* :class:`ContextIntegrationLayer` -- one round of the multi-scale context integration (MCI): the
  stride-8/16/32 features are projected to a common width and flattened into one token sequence
  (with a sine position and a learned level embedding); the words attend to it (V-L), the pixels
  attend to the words (L-V), then (``pixel_attention``, default on) the pixels of all scales
  attend to each other (multi-scale attention). The paper repeats this ``N`` times
  (``mci_layers``).
* :class:`ForegroundBackgroundPredictor` -- target prototype from the words, background prototype
  from ``num_bg_tokens`` learned tokens enriched with the *masked* expression (key phrase removed:
  what is left describes the surroundings); each pixel's feature is matched with both (scaled dot
  product), giving (background, target) logits. Inference takes the higher of the two.
  ``layout="paper"`` (eq. 8-9): the embedded masked expression is pooled adaptively into each of
  ``pool_bins`` bin counts, each spread over the tokens and added to them; the prototypes are the
  averaged target (MCI text stream) and background tokens. ``layout="compact"`` (earlier
  checkpoints): one pooling into as many bins as tokens, then target and background tokens
  exchange information and read the image (two attention blocks the paper does not describe).
* :class:`TwinStreamDecoder` -- MCI + pixel decoder (stride-8 output upsampled onto the stride-4
  stage) + the predictor; with ``mask_head`` (earlier checkpoints only) also a convolutional mask
  head trained alongside (``mask_logits``) but never used at inference.
* :class:`PhraseReconstruction` -- the dual-modal object learning head: a two-step Transformer
  decoder whose queries are the masked expression's features; it first reads the text stream, then
  the multimodal pixel tokens, and predicts every token's feature; training compares the key
  phrase's predictions with the (stop-gradient) features of the original tokens.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.init import trunc_normal_

from .layers import (
    AttentionBlock,
    ConvNormAct,
    flatten_tokens,
    masked_mean,
    norm2d,
    sine_position_embedding,
    unflatten_tokens,
    upsample_like,
)


def masked_adaptive_pool(tokens: torch.Tensor, mask: torch.Tensor, bins: int) -> torch.Tensor:
    """Average the real tokens of ``[B, L, C]`` into ``bins`` consecutive groups -> ``[B, bins, C]``.

    Groups follow the order of the real tokens only, so padding (of any length) changes nothing;
    a group that receives no token is zero.
    """
    weights = mask.to(tokens.dtype)
    count = weights.sum(1, keepdim=True).clamp_min(1.0)
    rank = weights.cumsum(1) - 1.0
    group = torch.floor(rank * bins / count).clamp(0, bins - 1).long()
    assign = F.one_hot(group, bins).to(tokens.dtype) * weights.unsqueeze(-1)  # [B, L, bins]
    total = torch.einsum("bln,blc->bnc", assign, tokens)
    return total / assign.sum(1).clamp_min(1.0).unsqueeze(-1)


class ContextIntegrationLayer(nn.Module):
    """One MCI round: words <- pixels, pixels <- words, pixels <- pixels (all scales)."""

    def __init__(
        self, dim: int, num_heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0, *, pixel_attention: bool = True
    ) -> None:
        super().__init__()
        self.text_from_vision = AttentionBlock(dim, num_heads, cross=True, mlp_ratio=mlp_ratio, dropout=dropout)
        self.vision_from_text = AttentionBlock(dim, num_heads, cross=True, mlp_ratio=mlp_ratio, dropout=dropout)
        self.vision_multiscale = (
            AttentionBlock(dim, num_heads, cross=False, mlp_ratio=mlp_ratio, dropout=dropout) if pixel_attention else None
        )

    def forward(self, pixels: torch.Tensor, words: torch.Tensor, mask: torch.Tensor):
        words = self.text_from_vision(words, pixels)
        pixels = self.vision_from_text(pixels, words, mask)
        if self.vision_multiscale is not None:
            pixels = self.vision_multiscale(pixels)
        return pixels, words


class ForegroundBackgroundPredictor(nn.Module):
    """(background, target) logits per pixel from a target and a background prototype."""

    def __init__(
        self,
        dim: int,
        text_dim: int,
        num_bg_tokens: int = 5,
        num_heads: int = 8,
        *,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        background_prior: bool = True,
        layout: str = "compact",
        pool_bins: Sequence[int] = (1, 3, 5),
    ) -> None:
        super().__init__()
        if layout not in ("compact", "paper"):
            raise ValueError(f"Fg-Bg predictor layout must be 'compact' or 'paper', not {layout!r}")
        self.layout = layout
        self.num_bg_tokens = num_bg_tokens
        self.pool_bins = tuple(int(b) for b in pool_bins)
        self.background_tokens = nn.Parameter(torch.zeros(num_bg_tokens, dim))
        trunc_normal_(self.background_tokens, std=0.02)
        self.prior_embed = nn.Linear(text_dim, dim) if background_prior else None
        if layout == "compact":
            self.token_exchange = AttentionBlock(dim, num_heads, cross=False, mlp_ratio=mlp_ratio, dropout=dropout)
            self.token_read = AttentionBlock(dim, num_heads, cross=True, mlp_ratio=mlp_ratio, dropout=dropout)
        self.target_embed = nn.Linear(dim, dim)
        self.background_embed = nn.Linear(dim, dim)
        self.pixel_embed = nn.Conv2d(dim, dim, 1)
        self.scale = dim**-0.5

    def forward(
        self,
        pixels: torch.Tensor,
        image_tokens: torch.Tensor,
        words: torch.Tensor,
        mask: torch.Tensor,
        prior: torch.Tensor,
        prior_mask: torch.Tensor,
    ) -> torch.Tensor:
        if self.layout == "paper":
            target, background = self._paper_prototypes(words, mask, prior, prior_mask)
        else:
            target, background = self._compact_prototypes(image_tokens, words, mask, prior, prior_mask)
        embedded = self.pixel_embed(pixels)
        fg = torch.einsum("bchw,bc->bhw", embedded, target) * self.scale
        bg = torch.einsum("bchw,bc->bhw", embedded, background) * self.scale
        return torch.stack([bg, fg], 1)


    def _compact_prototypes(
        self, image_tokens: torch.Tensor, words: torch.Tensor, mask: torch.Tensor, prior: torch.Tensor, prior_mask: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        batch, length = words.shape[:2]
        background = self.background_tokens.to(words.dtype).expand(batch, -1, -1)
        if self.prior_embed is not None:
            background = background + masked_adaptive_pool(self.prior_embed(prior), prior_mask, self.num_bg_tokens)
        tokens = torch.cat([words, background], 1)
        token_mask = torch.cat([mask.bool(), mask.new_ones(batch, self.num_bg_tokens, dtype=torch.bool)], 1)
        tokens = self.token_exchange(tokens, key_mask=token_mask)
        tokens = self.token_read(tokens, image_tokens)
        return self.target_embed(masked_mean(tokens[:, :length], mask)), self.background_embed(tokens[:, length:].mean(1))

    def _paper_prototypes(
        self, words: torch.Tensor, mask: torch.Tensor, prior: torch.Tensor, prior_mask: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Eq. (8)-(9): background tokens = learned tokens + the embedded masked expression pooled
        adaptively at several bin counts (each spread over the tokens); both prototypes are
        average-pooled token features, the target's from the MCI text stream."""
        background = self.background_tokens.to(words.dtype).expand(words.shape[0], -1, -1)
        if self.prior_embed is not None:
            embedded = self.prior_embed(prior)
            for bins in self.pool_bins:
                pooled = masked_adaptive_pool(embedded, prior_mask, bins)  # [B, bins, C]
                spread = torch.arange(self.num_bg_tokens, device=words.device) * bins // self.num_bg_tokens
                background = background + pooled[:, spread]
        return self.target_embed(masked_mean(words, mask)), self.background_embed(background.mean(1))


class TwinStreamDecoder(nn.Module):
    """Stage features + text stream -> (background, target) logits at stride 4, and more for training."""

    def __init__(
        self,
        in_channels: Sequence[int],
        text_dim: int,
        dim: int = 256,
        num_heads: int = 8,
        mci_layers: int = 3,
        num_bg_tokens: int = 5,
        *,
        norm: str = "batch",
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        background_prior: bool = True,
        mask_head: bool = True,
        pixel_attention: bool = True,
        predictor_layout: str = "compact",
        pool_bins: Sequence[int] = (1, 3, 5),
        proj_norm: bool = True,
        mci_embeddings: bool = True,
        pixel_fuse: bool = True,
    ) -> None:
        super().__init__()
        self.dim = dim
        #: the paper's channel reduction is "a convolution"; ``proj_norm`` adds a norm after it
        self.level_proj = nn.ModuleList([_projection(c, dim, norm, proj_norm) for c in in_channels[1:]])
        #: the MCI tokens' 2-D sine position + learned level embeddings (not in the paper's text)
        self.mci_embeddings = mci_embeddings
        if mci_embeddings:
            self.level_embed = nn.Parameter(torch.zeros(len(in_channels) - 1, dim))
            trunc_normal_(self.level_embed, std=0.02)
        self.text_proj = nn.Linear(text_dim, dim)
        self.context = nn.ModuleList(
            [
                ContextIntegrationLayer(dim, num_heads, mlp_ratio, dropout, pixel_attention=pixel_attention)
                for _ in range(mci_layers)
            ]
        )
        self.pixel_proj = _projection(in_channels[0], dim, norm, proj_norm)
        # the paper: MCI output upsampled and added to the stride-4 feature, "used for mask
        # prediction"; ``pixel_fuse`` adds a 3x3 conv-norm-ReLU after the addition
        self.pixel_fuse = ConvNormAct(dim, dim, 3, norm) if pixel_fuse else nn.Identity()
        # the extra convolutional head of earlier checkpoints (not in the paper; never used at inference)
        self.mask_head = nn.Sequential(ConvNormAct(dim, dim, 3, norm), nn.Conv2d(dim, 2, 1)) if mask_head else None
        self.predictor = ForegroundBackgroundPredictor(
            dim, text_dim, num_bg_tokens, num_heads, mlp_ratio=mlp_ratio, dropout=dropout,
            background_prior=background_prior, layout=predictor_layout, pool_bins=pool_bins,
        )

    def forward(
        self,
        features: List[torch.Tensor],
        words: torch.Tensor,
        mask: torch.Tensor,
        prior: torch.Tensor,
        prior_mask: torch.Tensor,
        *,
        with_mask_head: bool = False,
    ) -> Dict[str, torch.Tensor]:
        """``{"logits", "image_tokens", "words"}`` (+ ``"mask_logits"``), logits at stride 4."""
        tokens = []
        for index, (project, feature) in enumerate(zip(self.level_proj, features[1:])):
            x = project(feature)
            if not self.mci_embeddings:
                tokens.append(flatten_tokens(x))
                continue
            height, width = x.shape[-2:]
            position = sine_position_embedding(height, width, self.dim, device=x.device, dtype=x.dtype)
            tokens.append(flatten_tokens(x) + position + self.level_embed[index].to(x.dtype))
        image_tokens = torch.cat(tokens, 1)
        words = self.text_proj(words)
        for layer in self.context:
            image_tokens, words = layer(image_tokens, words, mask)
        height, width = features[1].shape[-2:]
        fine = unflatten_tokens(image_tokens[:, : height * width], height, width)
        pixels = self.pixel_fuse(self.pixel_proj(features[0]) + upsample_like(fine, features[0].shape[-2:]))
        out = {
            "logits": self.predictor(pixels, image_tokens, words, mask, prior, prior_mask),
            "image_tokens": image_tokens,
            "words": words,
        }
        if with_mask_head and self.mask_head is not None:
            out["mask_logits"] = self.mask_head(pixels)
        return out


class PhraseReconstruction(nn.Module):
    """Masked-expression queries -> predicted token features ``[B, L, text_dim]``."""

    def __init__(self, text_dim: int, dim: int, num_heads: int, *, mlp_ratio: float = 4.0, dropout: float = 0.0) -> None:
        super().__init__()
        self.query = nn.Linear(text_dim, dim)
        self.read_text = AttentionBlock(dim, num_heads, cross=True, mlp_ratio=mlp_ratio, dropout=dropout)
        self.read_image = AttentionBlock(dim, num_heads, cross=True, mlp_ratio=mlp_ratio, dropout=dropout)
        self.out = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, text_dim))

    def forward(
        self, prior: torch.Tensor, words: torch.Tensor, mask: torch.Tensor, image_tokens: torch.Tensor
    ) -> torch.Tensor:
        queries = self.read_text(self.query(prior), words, mask)
        return self.out(self.read_image(queries, image_tokens))


__all__ = [
    "ContextIntegrationLayer",
    "ForegroundBackgroundPredictor",
    "PhraseReconstruction",
    "TwinStreamDecoder",
    "masked_adaptive_pool",
]


def _projection(in_channels: int, dim: int, norm: str, with_norm: bool) -> nn.Module:
    """A 1x1 convolution to ``dim`` channels (biased when no norm follows), + the norm."""
    if not with_norm:
        return nn.Conv2d(in_channels, dim, 1)
    return nn.Sequential(nn.Conv2d(in_channels, dim, 1, bias=False), norm2d(norm, dim))
