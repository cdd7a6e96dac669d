"""Model architectures, registry and checkpoint format.

See :mod:`rrsis_geo.models.base` for the model contract every architecture follows. The names
below load on first use (PEP 562), so that torch-free submodules such as
:mod:`rrsis_geo.models.vocabulary` can be imported without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> the submodule that defines it
_EXPORTS = {
    "ReferringSegmentationModel": "base",
    "TextState": "base",
    "expand_text_state": "base",
    "load_checkpoint": "checkpoint",
    "read_config": "config_file",
    "save_checkpoint": "checkpoint",
    "build_model": "registry",
    "list_architectures": "registry",
    "register_model": "registry",
    "wants_pretrained": "registry",
    "Tokens": "tokenizer",
    "load_tokenizer": "tokenizer",
    "save_tokenizer": "tokenizer",
    "tokenize": "tokenizer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_EXPORTS))
