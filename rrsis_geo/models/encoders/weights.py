"""Reading pretrained weight files safely and loading them strictly.

Pretrained encoder files are ``.safetensors`` or PyTorch ``.pth``/``.bin`` pickles; the latter are
opened with ``torch.load(weights_only=True)`` only, which refuses anything but tensors and plain
containers. Loading is strict: a tensor the file lacks, a tensor it has too many or a shape that
differs is an error naming that tensor, because a half-loaded backbone trains without complaint
and silently underperforms.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, Mapping

import torch
from torch import nn

from ...errors import CheckpointError


def read_state_dict(path: Path) -> Dict[str, torch.Tensor]:
    """Tensors of a weights file, unwrapping the usual ``{"model": ...}``/``{"state_dict": ...}``."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointError(f"{path} is not a readable safetensors file ({exc})") from exc
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for unsafe content, RuntimeError for corrupt files
        raise CheckpointError(
            f"cannot read pretrained weights {path} as plain tensors ({exc}); give a .safetensors file or a "
            "PyTorch state dict"
        ) from exc
    for key in ("model", "state_dict", "model_state"):
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return dict(state)


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], source: str, *, ignore: Iterable[str] = ()) -> None:
    """Load ``state`` into ``module``; every tensor must match (keys starting with ``ignore`` are skipped)."""
    prefixes = tuple(ignore)
    expected = {k: v for k, v in module.state_dict().items() if not k.startswith(prefixes)}
    given = {k: v for k, v in state.items() if not k.startswith(prefixes)}
    for key, value in expected.items():
        if key not in given:
            raise CheckpointError(f"pretrained weights {source} lack the tensor {key!r}; is it the right file?")
        if tuple(given[key].shape) != tuple(value.shape):
            raise CheckpointError(
                f"pretrained weights {source}: tensor {key!r} has shape {tuple(given[key].shape)}, "
                f"the model needs {tuple(value.shape)}; is it the right file for this configuration?"
            )
    extra = sorted(set(given) - set(expected))
    if extra:
        raise CheckpointError(f"pretrained weights {source} hold tensor {extra[0]!r} the model does not have")
    module.load_state_dict(given, strict=False)
