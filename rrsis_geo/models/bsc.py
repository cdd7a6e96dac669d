"""BTDNet's bidirectional spatial correlation (BSC) between a vision stage and a BERT stage.

For each receptive field ``k`` (1, 3, 5) the visual map and the word sequence are "unfolded" into
local ``k x k`` pixel and ``k``-token neighbourhoods and mapped to a shared width; this is done as a
depthwise ``k``-wide convolution (the unfold, one weight per channel and offset) followed by a
linear map, which keeps the cost of large visual maps low. The pixel-word affinities of the
receptive fields are summed with learned weights, one set per direction (``alpha`` for
vision-oriented, ``beta`` for text-oriented). Each pixel then gathers the words it correlates
with and each word the pixels it correlates with; a gate (1x1 convolution + InstanceNorm, bounded
by tanh) weighs the gathered feature, which is added back to the stage output (residual) and so
feeds the next stage of *both* encoders. Padding never takes part: padded words are zeroed before
the token convolution, masked out of every softmax, and excluded from the text InstanceNorm.

``bidirectional=False`` keeps only the language-to-vision path (the paper's "only V2L"/"L2V"
ablation): the text stream is then plain BERT.

``layout`` (config ``btdnet.bsc_layout``) picks between two readings of section III-C2:

* ``"compact"`` (the default when the key is absent; what earlier checkpoints hold): the unfold is
  a depthwise ``k``-wide convolution followed by a Linear, *one* affinity per receptive field is
  shared by both directions (weighted by ``alpha`` one way and ``beta`` the other), and the gate
  is bounded by tanh;
* ``"paper"``: the unfold is the paper's -- every ``k x k`` pixel window (``k`` token window)
  flattened and mapped linearly, which is exactly a full ``k``-wide convolution -- and the two
  affinities are separate, ``A_v = sum_k alpha_k (V_k W^v_k) T_k^T`` (pixels to words) and
  ``A_t = sum_k beta_k (T_k W^t_k) V_k^T`` (words to pixels), each with its own bilinear weight;
  the gate is the paper's 1x1 convolution + InstanceNorm with no further squashing.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from torch import nn

from .layers import flatten_tokens, token_instance_norm, unflatten_tokens, zero_padding


class BidirectionalSpatialCorrelation(nn.Module):
    """``(visual [B, Cv, H, W], words [B, L, Ct], mask [B, L]) -> (visual', words')``."""

    def __init__(
        self,
        vis_dim: int,
        text_dim: int,
        dim: int,
        receptive_fields: Sequence[int] = (1, 3, 5),
        *,
        bidirectional: bool = True,
        layout: str = "compact",
        softmax: bool = True,
    ) -> None:
        super().__init__()
        if layout not in ("compact", "paper"):
            raise ValueError(f"BSC layout must be 'compact' or 'paper', not {layout!r}")
        self.receptive_fields = tuple(int(k) for k in receptive_fields)
        self.bidirectional = bidirectional
        self.layout = layout
        #: the paper reweights the features by the affinities; ``softmax`` normalises each row first
        #: (over the words, over the pixels); without it padding words get weight 0 instead
        self.softmax = softmax
        self.scale = dim**-0.5
        if layout == "paper":
            self._build_paper(vis_dim, text_dim, dim)
        else:
            self._build_compact(vis_dim, text_dim, dim)
        count = len(self.receptive_fields)
        self.alpha = nn.Parameter(torch.full((count,), 1.0 / count))
        self.text_to_vis = nn.Linear(text_dim, vis_dim)
        self.vis_gate = nn.Conv2d(2 * vis_dim, vis_dim, 1)
        self.vis_gate_norm = nn.InstanceNorm2d(vis_dim)
        if bidirectional:
            self.beta = nn.Parameter(torch.full((count,), 1.0 / count))
            self.vis_to_text = nn.Linear(vis_dim, text_dim)
            self.text_gate = nn.Linear(2 * text_dim, text_dim)  # a 1x1 convolution over tokens

    def _build_compact(self, vis_dim: int, text_dim: int, dim: int) -> None:
        self.vis_local = nn.ModuleList(
            [nn.Conv2d(vis_dim, vis_dim, k, padding=k // 2, groups=vis_dim) for k in self.receptive_fields]
        )
        self.vis_map = nn.ModuleList([nn.Linear(vis_dim, dim) for _ in self.receptive_fields])
        self.text_local = nn.ModuleList(
            [nn.Conv1d(text_dim, text_dim, k, padding=k // 2, groups=text_dim) for k in self.receptive_fields]
        )
        self.text_map = nn.ModuleList([nn.Linear(text_dim, dim) for _ in self.receptive_fields])

    def _build_paper(self, vis_dim: int, text_dim: int, dim: int) -> None:
        # unfold(k) then Linear(C * k * k -> dim) is one full k x k convolution
        fields = self.receptive_fields
        self.vis_unfold = nn.ModuleList([nn.Conv2d(vis_dim, dim, k, padding=k // 2) for k in fields])
        self.text_unfold = nn.ModuleList([nn.Conv1d(text_dim, dim, k, padding=k // 2) for k in fields])
        self.vis_bilinear = nn.ModuleList([nn.Linear(dim, dim, bias=False) for _ in fields])
        if self.bidirectional:
            self.text_bilinear = nn.ModuleList([nn.Linear(dim, dim, bias=False) for _ in fields])

    def affinities(
        self, visual: torch.Tensor, words0: torch.Tensor
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """``A_v [B, N, L]`` (pixels to words) and ``A_t [B, L, N]`` (words to pixels; ``None``
        when only the language-to-vision path exists), before masking and softmax."""
        if self.layout == "compact":
            return self._compact_affinities(visual, words0)
        affinity_v = affinity_t = None
        for index in range(len(self.receptive_fields)):
            local_v = flatten_tokens(self.vis_unfold[index](visual))  # [B, N, D]
            local_t = self.text_unfold[index](words0.transpose(1, 2)).transpose(1, 2)  # [B, L, D]
            term_v = self.alpha[index] * torch.matmul(self.vis_bilinear[index](local_v), local_t.transpose(1, 2))
            affinity_v = term_v if affinity_v is None else affinity_v + term_v
            if self.bidirectional:
                term_t = self.beta[index] * torch.matmul(self.text_bilinear[index](local_t), local_v.transpose(1, 2))
                affinity_t = term_t if affinity_t is None else affinity_t + term_t
        return affinity_v * self.scale, None if affinity_t is None else affinity_t * self.scale

    def _compact_affinities(
        self, visual: torch.Tensor, words0: torch.Tensor
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        affinity_v = affinity_t = None
        for index in range(len(self.receptive_fields)):
            q_vis = self.vis_map[index](flatten_tokens(self.vis_local[index](visual)))  # [B, N, D]
            local_words = self.text_local[index](words0.transpose(1, 2)).transpose(1, 2)
            q_text = self.text_map[index](local_words)  # [B, L, D]
            affinity = torch.matmul(q_vis, q_text.transpose(1, 2)) * self.scale  # [B, N, L]
            term_v = self.alpha[index] * affinity
            affinity_v = term_v if affinity_v is None else affinity_v + term_v
            if self.bidirectional:
                term_t = self.beta[index] * affinity
                affinity_t = term_t if affinity_t is None else affinity_t + term_t
        return affinity_v, None if affinity_t is None else affinity_t.transpose(1, 2)

    def _gate(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x) if self.layout == "compact" else x

    def forward(self, visual: torch.Tensor, words: torch.Tensor, mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        height, width = visual.shape[-2:]
        words0 = zero_padding(words, mask)
        affinity_v, affinity_t = self.affinities(visual, words0)
        valid = mask.bool()[:, None, :]
        # vision-oriented: every pixel gathers the words it correlates with
        if self.softmax:
            weights_v = affinity_v.masked_fill(~valid, torch.finfo(affinity_v.dtype).min).softmax(-1)
        else:
            weights_v = affinity_v.masked_fill(~valid, 0.0)
        from_text = unflatten_tokens(torch.matmul(weights_v, self.text_to_vis(words0)), height, width)
        gate_v = self._gate(self.vis_gate_norm(self.vis_gate(torch.cat([visual, from_text], 1))))
        visual_out = visual + gate_v * from_text
        if not self.bidirectional:
            return visual_out, words
        # text-oriented: every word gathers the pixels it correlates with
        weights_t = affinity_t.softmax(-1) if self.softmax else affinity_t  # [B, L, N]
        from_vision = torch.matmul(weights_t, self.vis_to_text(flatten_tokens(visual)))  # [B, L, Ct]
        gate_t = self._gate(token_instance_norm(self.text_gate(torch.cat([words, from_vision], -1)), mask))
        return visual_out, words + gate_t * from_vision
