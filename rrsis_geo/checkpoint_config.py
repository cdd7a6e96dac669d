"""A checkpoint's ``config.json``, typed (as timm's ``PretrainedCfg``): one definition, written by
training and read by the library and the plugin.

:class:`CheckpointConfig` holds the fields every front end reads (name, input size, threshold,
normalisation, scale, vocabulary, what the model knows) with their defaults in one place, and
keeps the architecture's own sections (``text``, ``vision``, ``lgce``, ...) as they are in
``extra``: they are hyper-parameters of the model constructors. It is checked when a checkpoint is
written (:func:`rrsis_geo.models.checkpoint.save_checkpoint`) as well as when one is read, and
``CheckpointConfig.from_dict(c.to_dict()) == c``.

Standard library only: the QGIS plugin reads it in QGIS's own process; planning and ``info`` read
it before (or without) torch.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

from .calibration import Calibration
from .errors import CheckpointError, Fix
from .knowledge import ModelKnowledge, model_knowledge

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: the input size of checkpoints that do not state one (the papers' era)
DEFAULT_INPUT_SIZE = 512

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class CheckpointConfig:
    """The typed fields of ``config.json``; everything else stays in ``extra`` (see module doc)."""

    architecture: str
    name: str = ""
    input_size: int = DEFAULT_INPUT_SIZE
    threshold: float = 0.5
    max_tokens: int = 20
    mean: Tuple[float, float, float] = IMAGENET_MEAN
    std: Tuple[float, float, float] = IMAGENET_STD
    gsd_m: Optional[float] = None  # the scale of expressions that name no category of ``scales``
    vocabulary: Tuple[str, ...] = ()
    batch_size: Optional[int] = None  # tiles per call the checkpoint suggests (None: per device)
    calibration: Optional[Calibration] = None  # per-category logit offsets (rrsis_geo.calibration)
    format_version: int = FORMAT_VERSION
    extra: Dict[str, Any] = field(default_factory=dict, hash=False)

    @classmethod
    def from_dict(cls, config: Mapping[str, Any], where: str = CONFIG_NAME) -> "CheckpointConfig":
        """Check and type ``config``; :class:`CheckpointError` naming the first bad field."""
        if not isinstance(config, Mapping):
            raise CheckpointError(f"{where} is not a JSON object")
        architecture = config.get("architecture")
        if not isinstance(architecture, str) or not architecture:
            raise CheckpointError(f"{where} has no 'architecture' field; it is not an rrsis checkpoint")
        typed = [f.name for f in fields(cls) if f.name != "extra"]
        values: Dict[str, Any] = {"architecture": architecture}
        for key in typed[1:]:  # in field order: the first bad field is named, every time
            if config.get(key) is not None:
                values[key] = _check(key, config[key], where)
        extra = {k: v for k, v in config.items() if k not in typed}
        made = cls(**values, extra=extra)
        model_knowledge(made.to_dict())  # scales and phrasings are checked here, not mid-run
        return made

    def to_dict(self) -> Dict[str, Any]:
        """The ``config.json`` object (typed fields, then the rest as it was)."""
        out: Dict[str, Any] = {}
        for f in fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if value is None or (f.name == "name" and not value):
                continue
            if isinstance(value, Calibration):
                value = value.to_dict()
            out[f.name] = list(value) if isinstance(value, tuple) else value
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out

    @classmethod
    def read(cls, directory: PathLike) -> "CheckpointConfig":
        """The config of a checkpoint directory, with errors that say what is wrong."""
        return cls.from_dict(read_config_dict(directory))

    def display_name(self, fallback: str = "model") -> str:
        return self.name or fallback

    @property
    def knowledge(self) -> ModelKnowledge:
        """Categories, phrasings and scales (:mod:`rrsis_geo.knowledge`)."""
        return model_knowledge(self.to_dict())

    def section(self, key: str) -> Dict[str, Any]:
        """An architecture section of ``extra`` (``text``, ``vision``...), empty when absent."""
        value = self.extra.get(key)
        return dict(value) if isinstance(value, Mapping) else {}


def _check(key: str, value: Any, where: str) -> Any:
    """One typed field's value, or :class:`CheckpointError`."""
    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{where}: '{key}' must be {what}, not {value!r}")

    if key in ("name",):
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if key in ("input_size", "max_tokens", "batch_size", "format_version"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 1:
            raise bad("a positive whole number")
        if key == "format_version" and int(value) > FORMAT_VERSION:
            raise CheckpointError(
                f"{where}: format_version {int(value)} is newer than this rrsis reads ({FORMAT_VERSION}); update rrsis"
            )
        return int(value)
    if key in ("threshold",):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:
            raise bad("a number between 0 and 1")
        return float(value)
    if key in ("gsd_m",):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise bad("a positive number of metres per pixel")
        return float(value)
    if key in ("mean", "std"):
        try:
            triple = tuple(float(v) for v in value)
        except (TypeError, ValueError):
            raise bad("three numbers (red, green, blue)") from None
        if len(triple) != 3 or not all(math.isfinite(v) for v in triple) or (key == "std" and min(triple) <= 0):
            raise bad("three numbers (red, green, blue)")
        return triple
    if key == "calibration":
        return Calibration.from_dict(value, where)
    if key == "vocabulary":
        if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise bad("a list of strings")
        return tuple(value)
    raise AssertionError(key)  # pragma: no cover - every typed field is handled above


def read_config_dict(directory: PathLike) -> Dict[str, Any]:
    """``config.json`` of a checkpoint directory as written, checked by :class:`CheckpointConfig`
    (the model constructors read their sections from it)."""
    path = Path(directory)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; `rrsis-geo models` lists the available ones",
                              fix=Fix("checkpoint"))
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
        CheckpointConfig.from_dict(config)
    except CheckpointError as exc:
        raise CheckpointError(f"checkpoint {path}: {exc}") from None
    return config
