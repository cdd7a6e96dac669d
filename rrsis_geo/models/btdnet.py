"""BTDNet: bidirectional alignment guided joint prediction (BSC + twin-stream decoder + D-MOLS).

* Bidirectional feature extractor: the vision stages and BERT, split into four groups of layers
  (``text_split``, ``[3, 6, 9, 12]`` for BERT-base; an even split for shallower BERTs), run in
  lockstep; after each stage a :class:`~.bsc.BidirectionalSpatialCorrelation` exchanges information
  both ways and both streams continue with the enhanced features.
* Target-background twin-stream decoder (:mod:`.twin_decoder`), whose foreground/background
  predictor gives the inference logits.
* Dual-modal object learning: the key object phrase (:mod:`.phrase_mask`) is masked out of the
  expression; BERT encodes that masked expression on its own (background prior, reconstruction
  queries) and a reconstruction head predicts the masked tokens' features from the multimodal
  features (training only).

Text state (:meth:`BTDNet.encode_text`, text-only work): ``embeddings`` (BERT embedding layer of
the expression), ``mask``, ``prior`` (BERT output for the masked expression), ``prior_mask`` and
``phrase_mask``. The BERT stages interleave with the vision stages and so run in ``segment``.

Config section ``btdnet``: ``dim`` (decoder width), ``num_heads``, ``bsc_dim`` (affinity width),
``receptive_fields`` ([1, 3, 5]), ``text_split`` (null = even), ``num_bg_tokens`` (5),
``mci_layers``, ``mlp_ratio``, ``dropout``, ``bidirectional`` (false = language-to-vision only),
``background_prior`` (false = background tokens without the masked expression), ``categories``
(category phrases for key-phrase masking; default :data:`DEFAULT_CATEGORIES`).

Paper-fidelity switches (issue 14). Each key's *absence* gives the layout of earlier checkpoints;
the paper presets set the paper's:

* ``mask_head`` (absent: true) -- an extra convolutional mask head trained beside the Fg-Bg
  predictor (``mask_logits``); the paper has none (false);
* ``bsc_layout`` (absent: ``"compact"``; paper: ``"paper"``) -- see :mod:`.bsc`;
* ``predictor_layout`` (absent: ``"compact"``; paper: ``"paper"``) and ``bg_pool_bins``
  (``[1, 3, 5]``) -- see :mod:`.twin_decoder`;
* ``mci_pixel_attention`` (absent: true) -- the pixel self-attention over all scales in each MCI
  round (the paper's "additionally, we employ multi-scale attention");
* ``recon_tokens`` (absent: ``"phrase"``; paper: ``"expression"``) -- the tokens the
  reconstruction loss compares: the key phrase only, or every real token of the expression
  (eq. 13 sums over the ``N`` tokens of the description).
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Mapping, Sequence

import torch
from torch import nn

from ..errors import RRSISError
from .base import ReferringSegmentationModel, TextState, expand_text_state
from .bsc import BidirectionalSpatialCorrelation
from .encoders import BertTextEncoder, VisionEncoder, build_text_encoder, build_vision_encoder, split_layers
from .layers import upsample_like
from .options import choice, int_list, option, section
from .phrase_mask import SCOPES, KeyPhraseMasker
from .vocabulary import ALL_CATEGORIES as DEFAULT_CATEGORIES
from .registry import PretrainedSelection
from .twin_decoder import PhraseReconstruction, TwinStreamDecoder

log = logging.getLogger(__name__)


class BTDNet(ReferringSegmentationModel):
    """See the module docstring. ``forward_train`` returns the logits of both heads and the
    reconstruction predictions, targets and mask."""

    def __init__(
        self,
        vision_encoder: VisionEncoder,
        text_encoder: BertTextEncoder,
        correlations: nn.ModuleList,
        decoder: TwinStreamDecoder,
        reconstruction: PhraseReconstruction,
        phrase_masker: KeyPhraseMasker,
        text_split: Sequence[int],
        *,
        text_frozen: bool = False,
        recon_tokens: str = "phrase",
    ) -> None:
        super().__init__()
        self.vision_encoder = vision_encoder
        self.text_encoder = text_encoder
        self.correlations = correlations
        self.decoder = decoder
        self.reconstruction = reconstruction
        self.phrase_masker = phrase_masker
        self.text_split = list(text_split)
        #: the config's ``text.frozen``: training keeps the text encoder's weights fixed
        self.text_frozen = text_frozen
        #: ``"phrase"`` or ``"expression"``: which tokens the reconstruction loss compares
        self.recon_tokens = recon_tokens

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> TextState:
        phrase = self.phrase_masker(input_ids, attention_mask)
        prior_mask = attention_mask.bool() & ~phrase
        prior_ids = input_ids.masked_fill(~prior_mask, self.text_encoder.pad_token_id)
        return {
            "embeddings": self.text_encoder.embed(input_ids),
            "mask": attention_mask,
            "prior": self.text_encoder(prior_ids, prior_mask.long()),
            "prior_mask": prior_mask.long(),
            "phrase_mask": phrase,
        }

    def extract(self, images: torch.Tensor, text: TextState):
        """The bidirectional feature extractor: four vision features and the final text stream."""
        words, mask = text["embeddings"], text["mask"]
        layer_mask = self.text_encoder.layer_mask(mask)
        features: List[torch.Tensor] = []
        x, start = images, 0
        for index, stop in enumerate(self.text_split):
            x = self.vision_encoder.stage(index, x)
            words = self.text_encoder.run_layers(words, layer_mask, start, stop)
            x, words = self.correlations[index](x, words, mask)
            features.append(x)
            start = stop
        return features, words

    def _decode(self, images: torch.Tensor, text: TextState, *, training_outputs: bool) -> Dict[str, torch.Tensor]:
        text = expand_text_state(text, images.shape[0])
        features, words = self.extract(images, text)
        return self.decoder(
            features, words, text["mask"], text["prior"], text["prior_mask"], with_mask_head=training_outputs
        )

    def segment(self, images: torch.Tensor, text: TextState) -> torch.Tensor:
        return upsample_like(self._decode(images, text, training_outputs=False)["logits"], images.shape[-2:])

    def forward_train(
        self, images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> Dict[str, torch.Tensor]:
        """``logits`` (Fg-Bg predictor, ``[B, 2, H, W]``: background, target; the prediction used
        at inference), ``mask_logits`` (only with the legacy ``mask_head``, same shape),
        ``recon_pred`` and ``recon_target`` (``[B, L, C_text]``) and ``recon_mask`` (``[B, L]`` bool:
        the key phrase's tokens, or every real token with ``recon_tokens: expression``).

        The reconstruction target is the original expression's token features at BERT's
        embedding layer (word + position + type embeddings, LayerNorm, no dropout), detached: the
        paper compares rephrased and original *tokens* under a stop-gradient; the embedding layer
        describes exactly those tokens and costs no extra BERT pass.
        """
        text = self.encode_text(input_ids, attention_mask)
        out = self._decode(images, text, training_outputs=True)
        size = images.shape[-2:]
        recon = self.reconstruction(text["prior"], out["words"], attention_mask, out["image_tokens"])
        with torch.no_grad():
            target = self.text_encoder.token_features(input_ids)
        recon_mask = text["phrase_mask"] if self.recon_tokens == "phrase" else attention_mask.bool()
        outputs = {
            "logits": upsample_like(out["logits"], size),
            "recon_pred": recon,
            "recon_target": target.detach(),
            "recon_mask": recon_mask,
        }
        if "mask_logits" in out:
            outputs["mask_logits"] = upsample_like(out["mask_logits"], size)
        return outputs


def _fill_phrase_masker(masker: KeyPhraseMasker, config: Mapping[str, Any], categories: Sequence[str]) -> None:
    """Fill the key-phrase rules from the config's tokenizer; leave them to the checkpoint if it is unreadable."""
    from .pretrained import resolve_pretrained
    from .tokenizer import load_tokenizer

    text = section(config, "text")
    source = text.get("tokenizer") or text.get("pretrained")
    if not source:
        log.info("no text.tokenizer in the config: BTDNet's key-phrase rules must come from a checkpoint")
        return
    try:
        tokenizer = load_tokenizer(resolve_pretrained(str(source)))
    except RRSISError as exc:
        log.info("tokenizer %s unavailable (%s): BTDNet's key-phrase rules must come from a checkpoint", source, exc)
        return
    masker.fill(tokenizer, categories)


def build_btdnet(config: Mapping[str, Any], load_pretrained: PretrainedSelection = False) -> BTDNet:
    """BTDNet from a config dict (see the module docstring for the ``btdnet`` section)."""
    vision = build_vision_encoder(config, load_pretrained)
    text = build_text_encoder(config, load_pretrained)
    settings = section(config, "btdnet", required=False)
    dim = int(option(settings, "dim", 256))
    heads = int(option(settings, "num_heads", 8))
    mlp_ratio = float(option(settings, "mlp_ratio", 4.0))
    dropout = float(option(settings, "dropout", 0.0))
    fields = int_list(settings, "receptive_fields", [1, 3, 5], where="btdnet")
    bidirectional = bool(option(settings, "bidirectional", True))
    split = split_layers(text.num_layers, settings.get("text_split"))
    bsc_dim = int(option(settings, "bsc_dim", dim))
    bsc_layout = choice(settings, "bsc_layout", ("compact", "paper"), "compact", where="btdnet")
    correlations = nn.ModuleList(
        [
            BidirectionalSpatialCorrelation(
                c, text.hidden_size, bsc_dim, fields, bidirectional=bidirectional, layout=bsc_layout,
                softmax=bool(option(settings, "affinity_softmax", True)),
            )
            for c in vision.channels
        ]
    )
    decoder = TwinStreamDecoder(
        vision.channels,
        text.hidden_size,
        dim,
        heads,
        int(option(settings, "mci_layers", 3)),
        int(option(settings, "num_bg_tokens", 5)),
        norm=choice(config, "decoder_norm", ("batch", "group"), "batch"),
        mlp_ratio=mlp_ratio,
        dropout=dropout,
        background_prior=bool(option(settings, "background_prior", True)),
        mask_head=bool(option(settings, "mask_head", True)),
        pixel_attention=bool(option(settings, "mci_pixel_attention", True)),
        predictor_layout=choice(settings, "predictor_layout", ("compact", "paper"), "compact", where="btdnet"),
        pool_bins=int_list(settings, "bg_pool_bins", [1, 3, 5], where="btdnet"),
        proj_norm=bool(option(settings, "proj_norm", True)),
        mci_embeddings=bool(option(settings, "mci_embeddings", True)),
        pixel_fuse=bool(option(settings, "pixel_fuse", True)),
    )
    reconstruction = PhraseReconstruction(text.hidden_size, dim, heads, mlp_ratio=mlp_ratio, dropout=dropout)
    categories = [str(c) for c in option(settings, "categories", DEFAULT_CATEGORIES)]
    scope = choice(settings, "key_phrase", SCOPES, "category", where="btdnet")
    masker = KeyPhraseMasker(int(text.bert.config.vocab_size), len(categories), scope)
    _fill_phrase_masker(masker, config, categories)
    return BTDNet(
        vision,
        text,
        correlations,
        decoder,
        reconstruction,
        masker,
        split,
        text_frozen=bool(section(config, "text").get("frozen", False)),
        recon_tokens=choice(settings, "recon_tokens", ("phrase", "expression"), "phrase", where="btdnet"),
    )
