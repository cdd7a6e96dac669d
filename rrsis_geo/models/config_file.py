"""A checkpoint's ``config.json``, read and checked without torch (so that planning, ``info`` and
``models`` answer before the model stack loads)."""

from __future__ import annotations

import os
from typing import Any, Dict, Iterable, List, Mapping, Union

from ..checkpoint_config import CONFIG_NAME, FORMAT_VERSION, WEIGHTS_NAME, read_config_dict

__all__ = ["CONFIG_NAME", "FORMAT_VERSION", "WEIGHTS_NAME", "external_prefixes", "is_external", "read_config"]

PathLike = Union[str, "os.PathLike[str]"]


def external_prefixes(config: Mapping[str, Any]) -> List[str]:
    """Module prefixes (``"text_encoder."``) whose tensors come from installed packages."""
    return [str(entry["prefix"]) for entry in config.get("external_weights", [])]


def is_external(key: str, prefixes: Iterable[str]) -> bool:
    return any(key.startswith(prefix) for prefix in prefixes)


def read_config(directory: PathLike) -> Dict[str, Any]:
    """Parse ``config.json`` of a checkpoint directory, checked by the typed
    :class:`~rrsis_geo.checkpoint_config.CheckpointConfig`, with errors that say what is wrong."""
    return read_config_dict(directory)
