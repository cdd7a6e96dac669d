"""A checkpoint's ``config.json``, read and checked without torch (so that planning, ``info`` and
``models`` answer before the model stack loads)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Union

from ..errors import CheckpointError
from ..knowledge import model_knowledge

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1

PathLike = Union[str, "os.PathLike[str]"]


def external_prefixes(config: Mapping[str, Any]) -> List[str]:
    """Module prefixes (``"text_encoder."``) whose tensors come from installed packages."""
    return [str(entry["prefix"]) for entry in config.get("external_weights", [])]


def is_external(key: str, prefixes: Iterable[str]) -> bool:
    return any(key.startswith(prefix) for prefix in prefixes)


def read_config(directory: PathLike) -> Dict[str, Any]:
    """Parse ``config.json`` of a checkpoint directory, with errors that say what is wrong."""
    path = Path(directory)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; `rrsis-geo models` lists the available ones")
    if not path.is_dir():
        raise CheckpointError(
            f"checkpoint {path} is a file; a checkpoint is a directory holding {CONFIG_NAME} and {WEIGHTS_NAME}"
        )
    config_path = path / CONFIG_NAME
    if not config_path.is_file():
        raise CheckpointError(f"checkpoint {path} has no {CONFIG_NAME}; it is not an rrsis checkpoint")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{config_path} is not valid JSON ({exc}); the checkpoint is corrupt") from exc
    if not isinstance(config, dict) or "architecture" not in config:
        raise CheckpointError(f"{config_path} has no 'architecture' field; it is not an rrsis checkpoint")
    try:
        model_knowledge(config)  # scales and phrasings are checked on load, not mid-run
    except CheckpointError as exc:
        raise CheckpointError(f"checkpoint {path}: {exc}") from None
    return config
