"""Which checkpoint the plugin uses and what the dock shows about it.

The default model is looked for first inside the plugin (a packaged plugin may bundle it under
``resources/models/default``), then where the library looks, as the worker reported it in its
``hello`` (``default_checkpoint``). ``config.json`` is read for the dock (name, vocabulary, default
threshold) by the library's standard-library-only typed config; the model itself is loaded by the
worker process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from .paths import bundled_default_checkpoint

NO_DEFAULT_MODEL = (
    "No default model is installed. Choose a checkpoint folder (config.json + model.safetensors), "
    "or install the plugin from a release zip that includes the default model."
)


#: The library's default checkpoint as the last worker probe reported it (None: not known).
_library_default: Optional[Path] = None


def set_library_default(path: Optional[str]) -> None:
    """Remember the default checkpoint a worker's ``hello`` named."""
    global _library_default
    _library_default = Path(path) if path else None


def default_checkpoint() -> Optional[Path]:
    """The default checkpoint directory, or ``None`` when none is known."""
    bundled = bundled_default_checkpoint()
    if bundled is not None:
        return bundled
    return _library_default  # a broken $RRSIS_CHECKPOINT is returned too: the card says what is wrong


def resolve(choice: Optional[str]) -> Optional[Path]:
    """The checkpoint directory for the user's ``choice`` (empty: the default, maybe ``None``)."""
    if choice and str(choice).strip():
        return Path(str(choice).strip()).expanduser()
    return default_checkpoint()


@dataclass
class ModelCard:
    """What the dock shows about a checkpoint, read from its config.json."""

    path: Path
    name: str
    threshold: float = 0.5
    input_size: Optional[int] = None
    vocabulary: List[str] = field(default_factory=list)
    error: Optional[str] = None  # why the checkpoint cannot be used, if it cannot

    @property
    def usable(self) -> bool:
        return self.error is None


def read_card(path: Optional[Path]) -> Optional[ModelCard]:
    """A :class:`ModelCard` for ``path`` (``None`` when there is no path), read by the library's
    typed config (:class:`rrsis_geo.checkpoint_config.CheckpointConfig`, standard library only)."""
    from rrsis_geo.checkpoint_config import CheckpointConfig
    from rrsis_geo.errors import CheckpointError
    from rrsis_geo.options import DOCK, describe

    if path is None:
        return None
    try:
        config = CheckpointConfig.read(path)
    except CheckpointError as exc:
        return ModelCard(Path(path), Path(path).name, error=describe(exc, DOCK))
    return ModelCard(
        path=Path(path),
        name=config.display_name(Path(path).name),
        threshold=config.threshold,
        input_size=config.input_size,
        vocabulary=[v for v in config.vocabulary if v.strip()],
    )
