"""Reading architecture settings out of a plain config dict, with errors that say what to fix.

A config comes from ``config.json`` of a checkpoint or from :mod:`rrsis_geo.models.presets`; a
missing or ill-typed field is a :class:`~rrsis_geo.errors.CheckpointError` naming the field, never a
``KeyError`` from deep inside a builder.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

from ..errors import CheckpointError

_MISSING = object()


def section(config: Mapping[str, Any], key: str, *, required: bool = True) -> Dict[str, Any]:
    """The sub-dict ``config[key]`` (``{}`` when absent and not required)."""
    value = config.get(key, _MISSING)
    if value is _MISSING or value is None:
        if required:
            raise CheckpointError(f"model config has no {key!r} section; it is not a complete rrsis model config")
        return {}
    if not isinstance(value, Mapping):
        raise CheckpointError(f"model config field {key!r} must be a mapping, got {type(value).__name__}")
    return dict(value)


def option(settings: Mapping[str, Any], key: str, default: Any = _MISSING, *, where: str = "model config") -> Any:
    """``settings[key]``, or ``default``; a required option that is missing raises."""
    if key in settings and settings[key] is not None:
        return settings[key]
    if default is _MISSING:
        raise CheckpointError(f"{where} is missing the field {key!r}")
    return default


def int_list(
    settings: Mapping[str, Any], key: str, default: Any = _MISSING, *, length: Optional[int] = None, where: str = "model config"
) -> List[int]:
    """A list of ints (``length`` of them when given)."""
    value = option(settings, key, default, where=where)
    if not isinstance(value, Sequence) or isinstance(value, str) or not all(isinstance(v, int) for v in value):
        raise CheckpointError(f"{where} field {key!r} must be a list of integers, got {value!r}")
    if length is not None and len(value) != length:
        raise CheckpointError(f"{where} field {key!r} must have {length} entries, got {len(value)}")
    return [int(v) for v in value]


def choice(settings: Mapping[str, Any], key: str, allowed: Sequence[str], default: str, *, where: str = "model config") -> str:
    """A string option restricted to ``allowed``."""
    value = option(settings, key, default, where=where)
    if value not in allowed:
        raise CheckpointError(f"{where} field {key!r} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return str(value)
