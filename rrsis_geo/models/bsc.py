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
"""

from __future__ import annotations

from typing import Sequence, Tuple

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
    ) -> None:
        super().__init__()
        self.receptive_fields = tuple(int(k) for k in receptive_fields)
        self.bidirectional = bidirectional
        self.scale = dim**-0.5
        self.vis_local = nn.ModuleList(
            [nn.Conv2d(vis_dim, vis_dim, k, padding=k // 2, groups=vis_dim) for k in self.receptive_fields]
        )
        self.vis_map = nn.ModuleList([nn.Linear(vis_dim, dim) for _ in self.receptive_fields])
        self.text_local = nn.ModuleList(
            [nn.Conv1d(text_dim, text_dim, k, padding=k // 2, groups=text_dim) for k in self.receptive_fields]
        )
        self.text_map = nn.ModuleList([nn.Linear(text_dim, dim) for _ in self.receptive_fields])
        count = len(self.receptive_fields)
        self.alpha = nn.Parameter(torch.full((count,), 1.0 / count))
        self.text_to_vis = nn.Linear(text_dim, vis_dim)
        self.vis_gate = nn.Conv2d(2 * vis_dim, vis_dim, 1)
        self.vis_gate_norm = nn.InstanceNorm2d(vis_dim)
        if bidirectional:
            self.beta = nn.Parameter(torch.full((count,), 1.0 / count))
            self.vis_to_text = nn.Linear(vis_dim, text_dim)
            self.text_gate = nn.Linear(2 * text_dim, text_dim)  # a 1x1 convolution over tokens

    def forward(self, visual: torch.Tensor, words: torch.Tensor, mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        height, width = visual.shape[-2:]
        words0 = zero_padding(words, mask)
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
        valid = mask.bool()[:, None, :]
        # vision-oriented: every pixel gathers the words it correlates with
        weights_v = affinity_v.masked_fill(~valid, torch.finfo(affinity_v.dtype).min).softmax(-1)
        from_text = unflatten_tokens(torch.matmul(weights_v, self.text_to_vis(words0)), height, width)
        gate_v = torch.tanh(self.vis_gate_norm(self.vis_gate(torch.cat([visual, from_text], 1))))
        visual_out = visual + gate_v * from_text
        if not self.bidirectional:
            return visual_out, words
        # text-oriented: every word gathers the pixels it correlates with
        weights_t = affinity_t.transpose(1, 2).softmax(-1)  # [B, L, N]
        from_vision = torch.matmul(weights_t, self.vis_to_text(flatten_tokens(visual)))  # [B, L, Ct]
        gate_t = torch.tanh(token_instance_norm(self.text_gate(torch.cat([words, from_vision], -1)), mask))
        return visual_out, words + gate_t * from_vision
