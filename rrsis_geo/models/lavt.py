"""LAVT (Yang et al., CVPR 2022): language-aware vision transformer, the common baseline.

BERT encodes the expression once; after each of the four vision stages a PWAM + language gate
(:mod:`.fusion`) fuses the words into the visual features that feed the next stage; the decoder
(:mod:`.decoder`) turns the four fused features into two-class logits, upsampled to the input.

Config sections used (besides the common fields): ``vision``, ``text``, ``fusion``
(``num_heads`` per stage or one int, ``dropout``), ``decoder`` (``hidden``, null = stage 4 / 2),
``decoder_norm`` (``"batch"`` as the paper, ``"group"`` for batch-independent statistics) and
``language`` (what the fusion attends to: the words, as the paper, or slots made from the sentence
embedding; see :mod:`.language`).
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

import torch
from torch import nn

from .base import ReferringSegmentationModel, TextState, expand_text_state
from .decoder import LAVTDecoder
from .encoders import BertTextEncoder, VisionEncoder, build_text_encoder, build_vision_encoder
from .fusion import StageFusion
from .language import SentenceSlots, build_language
from .layers import upsample_like
from .options import choice, option, section
from .registry import PretrainedSelection


class LAVT(ReferringSegmentationModel):
    """Vision encoder with PWAM fusion after every stage, and LAVT's decoder.

    Text state: ``{"words": [B, L, C_t], "mask": [B, L]}``.
    """

    def __init__(
        self,
        vision_encoder: VisionEncoder,
        text_encoder: BertTextEncoder,
        fusion: nn.ModuleList,
        decoder: nn.Module,
        *,
        text_frozen: bool = False,
        language: Optional[SentenceSlots] = None,
    ) -> None:
        super().__init__()
        self.vision_encoder = vision_encoder
        self.text_encoder = text_encoder
        self.fusion = fusion
        self.decoder = decoder
        #: None: the fusion attends to the words (LAVT); else to slots made from the sentence embedding
        self.language = language
        #: the config's ``text.frozen``: training keeps the text encoder's weights fixed
        self.text_frozen = text_frozen

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> TextState:
        # float32 even under autocast: once per expression for a prediction, and every tile and
        # pixel reads it (bf16 text features moved masks on the samples; README, --precision)
        with torch.autocast(input_ids.device.type, enabled=False):
            words = self.text_encoder(input_ids, attention_mask)
            if self.language is None:
                return {"words": words, "mask": attention_mask}
            return self.language(words, attention_mask)

    def fused_features(self, images: torch.Tensor, text: TextState) -> List[torch.Tensor]:
        """The four PWAM outputs (layer-normalised), the decoder's inputs."""
        words, mask = text["words"], text["mask"]
        outputs = []
        x = images
        for index, fusion in enumerate(self.fusion):
            x, fused = fusion(self.vision_encoder.stage(index, x), words, mask)
            outputs.append(fused)
        return outputs

    def enhance(self, features: List[torch.Tensor], text: TextState) -> List[torch.Tensor]:
        """Hook between fusion and decoding (LGCE's cross-scale enhancement); identity in LAVT."""
        return features

    def segment(self, images: torch.Tensor, text: TextState) -> torch.Tensor:
        text = expand_text_state(text, images.shape[0])
        features = self.enhance(self.fused_features(images, text), text)
        return upsample_like(self.decoder(features), images.shape[-2:])


def fusion_heads(settings: Mapping[str, Any]) -> List[int]:
    """PWAM heads per stage from ``fusion.num_heads`` (an int for all stages, or four)."""
    heads = option(settings, "num_heads", 1)
    return [int(heads)] * 4 if isinstance(heads, int) else [int(h) for h in heads]


def build_lavt_parts(config: Mapping[str, Any], load_pretrained: PretrainedSelection) -> Dict[str, Any]:
    """Encoders, fusion and decoder of a LAVT-family model (shared with LGCE)."""
    vision = build_vision_encoder(config, load_pretrained)
    text = build_text_encoder(config, load_pretrained)
    fusion_settings = section(config, "fusion", required=False)
    heads = fusion_heads(fusion_settings)
    dropout = float(option(fusion_settings, "dropout", 0.0))
    fusion = nn.ModuleList(
        [
            StageFusion(dim, text.hidden_size, heads[i], dropout, gate=i < 3)
            for i, dim in enumerate(vision.channels)
        ]
    )
    decoder_settings = section(config, "decoder", required=False)
    norm = choice(config, "decoder_norm", ("batch", "group"), "batch")
    decoder = LAVTDecoder(vision.channels, option(decoder_settings, "hidden", None), norm)
    text_frozen = bool(section(config, "text").get("frozen", False))
    language = build_language(section(config, "language", required=False), text.hidden_size)
    return {
        "vision_encoder": vision,
        "text_encoder": text,
        "fusion": fusion,
        "decoder": decoder,
        "text_frozen": text_frozen,
        "language": language,
    }


def build_lavt(config: Mapping[str, Any], load_pretrained: PretrainedSelection = False) -> LAVT:
    """LAVT from a config dict (see the module docstring for the sections it reads)."""
    parts = build_lavt_parts(config, load_pretrained)
    frozen = parts.pop("text_frozen")
    return LAVT(**parts, text_frozen=frozen)
