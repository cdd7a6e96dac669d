"""Checkpoints a training run writes: ``best/`` and ``last/`` in the library's format.

Both are directories that ``rrsis-geo predict --checkpoint`` and
:func:`rrsis_geo.models.load_checkpoint` take directly. ``last/`` additionally holds what
resuming needs, without pickles::

    last/
      config.json, model.safetensors, tokenizer files    (library format, float32)
      optimizer.safetensors    AdamW moments and step counts, one tensor per entry
      training_state.json      epoch, schedule iteration, optimizer hyper-parameters, best so far

Each checkpoint is assembled under a temporary name beside its target and renamed into place
when complete, so an interrupted save never leaves a half-written ``last/`` behind.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional

import torch
from torch import nn

from rrsis_geo.errors import CheckpointError
from rrsis_geo.io_utils import publish_modes, replace_dir
from rrsis_geo.models import save_checkpoint
from rrsis_geo.models.checkpoint import WEIGHTS_NAME

TRAINING_STATE = "training_state.json"
OPTIMIZER_STATE = "optimizer.safetensors"


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple:
    """``(tensors, json_part)``: an optimizer state split into safetensors + JSON."""
    state = optimizer.state_dict()
    tensors: Dict[str, torch.Tensor] = {}
    scalars: Dict[str, Dict[str, Any]] = {}
    for pid, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{pid}.{key}"] = value.detach().to("cpu").contiguous().clone()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def load_optimizer(optimizer: torch.optim.Optimizer, directory: Path, json_part: Mapping[str, Any]) -> None:
    """Restore an optimizer saved by :func:`optimizer_tensors` (parameters must match in order)."""
    from safetensors.torch import load_file

    flat = load_file(str(directory / OPTIMIZER_STATE))
    state: Dict[int, Dict[str, Any]] = {}
    for name, value in flat.items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    for pid, entry in json_part.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(entry)
    groups = [dict(g) for g in json_part["param_groups"]]
    for group in groups:
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
    if len(groups) != len(optimizer.param_groups) or any(
        len(a["params"]) != len(b["params"]) for a, b in zip(groups, optimizer.param_groups)
    ):
        raise CheckpointError(
            f"the optimizer state in {directory} does not match the model's trainable parameters; "
            "was the config changed since? Start a new run instead of --resume"
        )
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def write_checkpoint(
    target: Path,
    model: nn.Module,
    model_config: Mapping[str, Any],
    tokenizer: Any,
    *,
    dtype: Optional[torch.dtype] = None,
    optimizer: Optional[torch.optim.Optimizer] = None,
    training_state: Optional[Mapping[str, Any]] = None,
    extra_tensors: Optional[Mapping[str, Mapping[str, torch.Tensor]]] = None,
) -> Path:
    """Write a library-format checkpoint (plus resume state when given) atomically to ``target``.

    ``extra_tensors``: ``{file name: {tensor name: tensor}}`` written beside the weights, e.g. a
    training-only head that resuming needs and the library does not load."""
    from safetensors.torch import save_file

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".staging", dir=target.parent))
    try:
        inner = save_checkpoint(staging / "checkpoint", model, model_config, tokenizer, dtype=dtype)
        if optimizer is not None:
            tensors, json_part = optimizer_tensors(optimizer)
            save_file(tensors, str(inner / OPTIMIZER_STATE))
            state = dict(training_state or {})
            state["optimizer"] = json_part
            (inner / TRAINING_STATE).write_text(json.dumps(state, indent=1) + "\n", encoding="utf-8")
        for name, tensors in (extra_tensors or {}).items():
            save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, str(inner / name))
        if optimizer is not None or extra_tensors:
            publish_modes(inner)
        replace_dir(inner, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def read_training_state(directory: Path) -> Dict[str, Any]:
    """The resume state stored in a ``last/`` checkpoint."""
    path = Path(directory) / TRAINING_STATE
    if not path.is_file() or not (Path(directory) / OPTIMIZER_STATE).is_file():
        raise CheckpointError(f"{directory} holds no resume state ({TRAINING_STATE}, {OPTIMIZER_STATE})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc})") from exc


def load_weights(model: nn.Module, directory: Path, prefixes: Iterable[str] = ()) -> None:
    """Load ``model.safetensors`` of a checkpoint into an existing model (strict, except external prefixes)."""
    from safetensors.torch import load_file

    prefixes = tuple(prefixes)
    state = load_file(str(Path(directory) / WEIGHTS_NAME))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(prefixes)] if prefixes else list(missing)
    if missing or unexpected:
        name = (missing or unexpected)[0]
        raise CheckpointError(f"{directory} does not match the model: tensor {name!r} is missing or unexpected")

