"""LAVT's language fusion after each vision stage: pixel-word attention (PWAM) + language gate.

For every pixel, PWAM attends over the words of the expression (padding masked out), multiplies
the attended language feature element-wise with a projection of the pixel's visual feature and
projects the product. The language gate (two bias-free linear layers with ReLU and tanh) turns
that multimodal feature into per-channel gates; ``stage output + gate * multimodal`` feeds the
next vision stage, and the (layer-normalised) multimodal feature itself goes to the decoder.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn

from .layers import flatten_tokens, token_instance_norm, unflatten_tokens, zero_padding


class PixelWordAttention(nn.Module):
    """Attention from each pixel to the words: ``[B, N, C_v]`` x ``[B, L, C_t]`` -> ``[B, N, C_out]``.

    Queries and the output are instance-normalised over the pixels, as in LAVT.
    """

    def __init__(self, vis_dim: int, text_dim: int, key_dim: int, value_dim: int, out_dim: int, num_heads: int = 1) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.query = nn.Linear(vis_dim, key_dim)
        self.key = nn.Linear(text_dim, key_dim)
        self.value = nn.Linear(text_dim, value_dim)
        self.out = nn.Linear(value_dim, out_dim)

    def forward(self, pixels: torch.Tensor, words: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, n, _ = pixels.shape
        heads = self.num_heads
        query = token_instance_norm(self.query(pixels))
        key = zero_padding(self.key(words), mask)
        value = zero_padding(self.value(words), mask)
        query = query.view(batch, n, heads, -1).transpose(1, 2)  # [B, h, N, d]
        key = key.view(batch, key.shape[1], heads, -1).transpose(1, 2)  # [B, h, L, d]
        value = value.view(batch, value.shape[1], heads, -1).transpose(1, 2)
        scores = torch.matmul(query, key.transpose(-1, -2)) * self.key_dim**-0.5
        scores = scores.masked_fill(~mask.bool()[:, None, None, :], torch.finfo(scores.dtype).min)
        attended = torch.matmul(scores.softmax(-1), value)  # [B, h, N, d_v]
        attended = attended.transpose(1, 2).reshape(batch, n, -1)
        return token_instance_norm(self.out(attended))


class PWAM(nn.Module):
    """Pixel-word attention module: ``project_mm(vis_project(x) * attention(x, words))``."""

    def __init__(self, dim: int, text_dim: int, num_heads: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.vis_project = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout))
        self.attention = PixelWordAttention(dim, text_dim, dim, dim, dim, num_heads)
        self.project_mm = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout))

    def forward(self, pixels: torch.Tensor, words: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.project_mm(self.vis_project(pixels) * self.attention(pixels, words, mask))


class LanguageGate(nn.Sequential):
    """Per-channel gates in (-1, 1) from the multimodal feature."""

    def __init__(self, dim: int) -> None:
        super().__init__(nn.Linear(dim, dim, bias=False), nn.ReLU(), nn.Linear(dim, dim, bias=False), nn.Tanh())


class StageFusion(nn.Module):
    """PWAM + language gate after one vision stage.

    Returns ``(next_stage_input, decoder_feature)``, both ``[B, C, H, W]``. The last stage has no
    next stage and so no gate (``gate=False``; its next-stage input is None): LAVT builds one there
    too, but it never receives a gradient.
    """

    def __init__(self, dim: int, text_dim: int, num_heads: int = 1, dropout: float = 0.0, *, gate: bool = True) -> None:
        super().__init__()
        self.pwam = PWAM(dim, text_dim, num_heads, dropout)
        self.gate = LanguageGate(dim) if gate else None
        self.norm = nn.LayerNorm(dim)

    def forward(
        self, x: torch.Tensor, words: torch.Tensor, mask: torch.Tensor
    ) -> Tuple[Optional[torch.Tensor], torch.Tensor]:
        height, width = x.shape[-2:]
        pixels = flatten_tokens(x)
        fused = self.pwam(pixels, words, mask)
        decoder_feature = unflatten_tokens(self.norm(fused), height, width)
        if self.gate is None:
            return None, decoder_feature
        return unflatten_tokens(pixels + self.gate(fused) * fused, height, width), decoder_feature
