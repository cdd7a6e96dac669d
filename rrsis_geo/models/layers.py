"""Small building blocks shared by the architectures.

Conventions: image features are ``[B, C, H, W]``; token sequences are ``[B, N, C]``; a text mask is
``[B, L]`` with 1 (or True) for real tokens and 0 for padding. Everything that mixes information
across words masks the padding, so that padded positions never change a result.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError


def flatten_tokens(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B, H*W, C]``."""
    return x.flatten(2).transpose(1, 2)


def unflatten_tokens(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``[B, H*W, C]`` -> ``[B, C, H, W]``."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], height, width)


def masked_mean(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``tokens [B, L, C]`` over the real positions of ``mask [B, L]`` -> ``[B, C]``."""
    weights = mask.to(tokens.dtype).unsqueeze(-1)
    return (tokens * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def zero_padding(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Set padded positions to exactly zero (so that what the padding held cannot leak anywhere)."""
    return tokens * mask.to(tokens.dtype).unsqueeze(-1)


def token_instance_norm(tokens: torch.Tensor, mask: Optional[torch.Tensor] = None, eps: float = 1e-5) -> torch.Tensor:
    """Instance norm of ``[B, N, C]`` per channel over the tokens (only the real ones with ``mask``).

    The same as ``nn.InstanceNorm1d`` on ``[B, C, N]`` (no affine), which LAVT applies to its
    attention queries and outputs, but channels-last and mask-aware.
    """
    x = tokens.float()  # statistics in float32 under autocast, as autocast runs instance_norm
    if mask is None:
        mean = x.mean(1, keepdim=True)
        var = x.var(1, unbiased=False, keepdim=True)
    else:
        weights = mask.to(x.dtype).unsqueeze(-1)
        count = weights.sum(1, keepdim=True).clamp_min(1.0)
        mean = (x * weights).sum(1, keepdim=True) / count
        var = (((x - mean) * weights) ** 2).sum(1, keepdim=True) / count
    return ((x - mean) * torch.rsqrt(var + eps)).to(tokens.dtype)


def group_count(channels: int, max_groups: int = 32) -> int:
    """Largest number of groups <= ``max_groups`` that divides ``channels``."""
    for groups in range(min(max_groups, channels), 0, -1):
        if channels % groups == 0:
            return groups
    return 1


def norm2d(kind: str, channels: int) -> nn.Module:
    """``"batch"`` -> BatchNorm2d, ``"group"`` -> GroupNorm (per-sample, so identical under DDP)."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(group_count(channels), channels)
    raise CheckpointError(f"decoder_norm must be 'batch' or 'group', got {kind!r}")


class ConvNormAct(nn.Sequential):
    """Conv (no bias) -> norm -> ReLU, the decoder's unit."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, norm: str) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            norm2d(norm, out_channels),
            nn.ReLU(inplace=True),
        )


class Mlp(nn.Sequential):
    """Linear -> GELU -> dropout -> Linear -> dropout."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim), nn.Dropout(dropout))


class MultiHeadAttention(nn.Module):
    """Multi-head attention ``queries -> keys/values`` with an optional key mask (scaled dot product)."""

    def __init__(self, dim: int, num_heads: int, *, kv_dim: Optional[int] = None, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise CheckpointError(f"attention width {dim} is not divisible by its {num_heads} heads")
        kv_dim = kv_dim or dim
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(kv_dim, dim)
        self.v = nn.Linear(kv_dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        return x.view(batch, length, self.num_heads, dim // self.num_heads).transpose(1, 2)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, key_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        q, k, v = self._heads(self.q(queries)), self._heads(self.k(keys)), self._heads(self.v(keys))
        attn_mask = None
        if key_mask is not None:
            attn_mask = key_mask.bool()[:, None, None, :]  # [B, 1, 1, Lk]: True = may attend
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )
        out = out.transpose(1, 2).reshape(queries.shape[0], queries.shape[1], -1)
        return self.proj(out)


class AttentionBlock(nn.Module):
    """Pre-norm residual attention followed by a residual MLP.

    ``cross=False``: self-attention, ``block(x, key_mask=...)``; ``cross=True``: ``x`` attends to
    ``keys`` (normalised by their own LayerNorm), ``block(x, keys, key_mask)``.
    """

    def __init__(self, dim: int, num_heads: int, *, cross: bool, mlp_ratio: float = 4.0, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim) if cross else None
        self.attn = MultiHeadAttention(dim, num_heads, dropout=dropout)
        self.drop = nn.Dropout(dropout)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dropout)

    def forward(
        self, x: torch.Tensor, keys: Optional[torch.Tensor] = None, key_mask: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        q = self.norm_q(x)
        if self.norm_kv is None:
            if keys is not None:
                raise ValueError("a self-attention block takes no keys")
            kv = q
        else:
            if keys is None:
                raise ValueError("a cross-attention block needs keys")
            kv = self.norm_kv(keys)
        x = x + self.drop(self.attn(q, kv, key_mask))
        return x + self.mlp(self.norm_mlp(x))


def sine_position_embedding(height: int, width: int, dim: int, *, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """2-D sine/cosine position embedding ``[H*W, dim]`` for any grid size (DETR style, normalised)."""
    if dim % 4:
        raise CheckpointError(f"position embedding width {dim} must be divisible by 4")
    quarter = dim // 4
    omega = 1.0 / (10000 ** (torch.arange(quarter, device=device, dtype=torch.float32) / quarter))
    ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height * 2 * math.pi
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width * 2 * math.pi
    y = ys[:, None] * omega[None]  # [H, quarter]
    x = xs[:, None] * omega[None]  # [W, quarter]
    y = torch.cat([y.sin(), y.cos()], 1)[:, None, :].expand(height, width, 2 * quarter)
    x = torch.cat([x.sin(), x.cos()], 1)[None, :, :].expand(height, width, 2 * quarter)
    return torch.cat([y, x], -1).reshape(height * width, dim).to(dtype)


def upsample_like(x: torch.Tensor, size: "tuple[int, int] | torch.Size") -> torch.Tensor:
    """Bilinear resize to ``size`` (align_corners=True, as LAVT)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)
