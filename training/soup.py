"""Average the weights of checkpoints fine-tuned from one model (a uniform "model soup").

Usage::

    python -m training.soup --checkpoint runs/round3 --checkpoint runs/ab5/bal/run/best ... \
        --out runs/soup [--overwrite]

Fine-tunes of the same starting weights stay in one basin of the loss, so their average is a
model of its own, often better on data unlike the training data than any one of them (Wortsman
et al., "Model soups", ICML 2022); it costs no training and no inference time. The checkpoints
must describe the same model: their configs may differ only in ``metrics`` (each run's own
validation) and ``calibration`` (fitted per model, so the soup carries none). Floating-point
tensors are averaged in float32 and stored in the first checkpoint's dtype; integer tensors
(BatchNorm's step counters) must agree or the largest is kept. The soup's ``metrics`` record
only its ingredients (name, weights sha256, each one's own training lineage): evaluate it before
trusting it. The directory is assembled beside ``--out`` and renamed into place; an existing one
is replaced only with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch

from rrsis_geo.checkpoint_config import CheckpointConfig
from rrsis_geo.errors import CheckpointError, InputError, OutputError, RRSISError
from rrsis_geo.io_utils import publish_modes, replace_dir
from rrsis_geo.models.checkpoint import CONFIG_NAME, WEIGHTS_NAME

#: config keys that belong to one trained model, not to the architecture
PER_MODEL_KEYS = ("metrics", "calibration")


def _read(checkpoint: Path) -> Dict[str, Any]:
    config_path, weights = checkpoint / CONFIG_NAME, checkpoint / WEIGHTS_NAME
    if not config_path.is_file() or not weights.is_file():
        raise InputError(f"{checkpoint} is not a checkpoint directory ({CONFIG_NAME}, {WEIGHTS_NAME})")
    return json.loads(config_path.read_text(encoding="utf-8"))


def _architecture(config: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in config.items() if k not in PER_MODEL_KEYS}


def average_states(states: Sequence[Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
    """The uniform average of state dicts with the same keys and shapes (see module docstring)."""
    first = states[0]
    for index, state in enumerate(states[1:], start=2):
        if state.keys() != first.keys():
            name = sorted(state.keys() ^ first.keys())[0]
            raise CheckpointError(f"checkpoint {index} does not have the same tensors as the first (tensor {name!r})")
        for key, value in state.items():
            if value.shape != first[key].shape:
                raise CheckpointError(
                    f"checkpoint {index}: tensor {key!r} is {tuple(value.shape)}, not {tuple(first[key].shape)}"
                )
    averaged: Dict[str, torch.Tensor] = {}
    for key, value in first.items():
        if value.is_floating_point():
            total = sum(state[key].float() for state in states)
            averaged[key] = (total / len(states)).to(value.dtype)
        else:
            averaged[key] = torch.stack([state[key] for state in states]).amax(dim=0)
    return averaged


def lineage(checkpoint: Path, config: Dict[str, Any]) -> Dict[str, Any]:
    """What the soup records of one ingredient: its lineage entry (as a warm start records) and
    the training run that made it."""
    from training.engine import lineage_entry

    entry = lineage_entry(checkpoint, config)
    training = (config.get("metrics") or {}).get("training")
    if training:
        entry["training"] = training
    return entry


def make_soup(checkpoints: Sequence[Path], out: Path, *, overwrite: bool = False) -> Path:
    """Write the average of ``checkpoints`` as a checkpoint directory ``out``; returns ``out``."""
    from safetensors.torch import load_file, save_file

    if len(checkpoints) < 2:
        raise InputError("a soup needs at least two checkpoints (--checkpoint twice or more)")
    if out.exists() and not overwrite:
        raise OutputError(f"{out} exists; pass --overwrite to replace it")
    configs = [_read(Path(c)) for c in checkpoints]
    for path, config in zip(checkpoints[1:], configs[1:]):
        if _architecture(config) != _architecture(configs[0]):
            differing = sorted(
                k
                for k in set(config) | set(configs[0])
                if k not in PER_MODEL_KEYS and config.get(k) != configs[0].get(k)
            )
            raise CheckpointError(
                f"{path} describes another model than {checkpoints[0]} (config differs in: {', '.join(differing)})"
            )
    states = [load_file(str(Path(c) / WEIGHTS_NAME)) for c in checkpoints]
    averaged = average_states(states)
    config = _architecture(configs[0])
    config["metrics"] = {"training": {"soup": [lineage(Path(c), cfg) for c, cfg in zip(checkpoints, configs)]}}
    CheckpointConfig.from_dict(config)  # checked when written, as when read

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".staging", dir=out.parent))
    try:
        # tokenizer files and the known phrasings' embeddings: the text side is the same in every
        # ingredient (same config, frozen external encoder), so the first one's are the soup's
        for item in Path(checkpoints[0]).iterdir():
            if item.is_file() and item.name not in (CONFIG_NAME, WEIGHTS_NAME) and not item.name.startswith("."):
                shutil.copy2(item, staging / item.name)
        save_file(averaged, str(staging / WEIGHTS_NAME), metadata={"format": "pt"})
        (staging / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        publish_modes(staging)
        replace_dir(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.soup", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--checkpoint",
        type=Path,
        action="append",
        required=True,
        help="a checkpoint directory (twice or more; the first gives the config and text files)",
    )
    parser.add_argument("--out", type=Path, required=True, help="the soup's checkpoint directory")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    args = parser.parse_args(argv)
    try:
        out = make_soup(args.checkpoint, args.out, overwrite=args.overwrite)
    except RRSISError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    print(f"wrote {out}: the average of {len(args.checkpoint)} checkpoints")
    return 0


if __name__ == "__main__":
    sys.exit(main())
