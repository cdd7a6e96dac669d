"""Which checkpoint the plugin uses, what the dock shows about it, and the loaded-model cache.

The default model is looked for first inside the plugin (a packaged plugin may bundle it under
``resources/models/default``), then where the library looks (:mod:`rrsis_geo.catalog`).
Reading ``config.json`` for the dock (name, vocabulary, default threshold) is plain JSON so that
the GUI never waits for torch to import; loading the model goes through
:func:`rrsis_geo.load_model`, in a worker thread.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional, Tuple

from .paths import bundled_default_checkpoint

NO_DEFAULT_MODEL = (
    "No default model is installed. Choose a checkpoint folder (config.json + model.safetensors), "
    "or install the plugin from a release zip that includes the default model."
)


def default_checkpoint() -> Optional[Path]:
    """The default checkpoint directory, or ``None`` when none is installed."""
    bundled = bundled_default_checkpoint()
    if bundled is not None:
        return bundled
    try:
        from rrsis_geo.catalog import default_checkpoint as library_default
    except ImportError:
        return None
    return library_default()  # a broken $RRSIS_CHECKPOINT is returned too: the card says what is wrong


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
    """A :class:`ModelCard` for ``path`` (``None`` when there is no path)."""
    if path is None:
        return None
    config_file = Path(path) / "config.json"
    if not config_file.is_file():
        return ModelCard(Path(path), Path(path).name, error=f"{path} holds no config.json: it is not an rrsis checkpoint")
    try:
        config: Any = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return ModelCard(Path(path), Path(path).name, error=f"{config_file} cannot be read: {exc}")
    if not isinstance(config, dict):
        return ModelCard(Path(path), Path(path).name, error=f"{config_file} is not a checkpoint config")
    vocabulary = [str(v) for v in config.get("vocabulary") or [] if str(v).strip()]
    try:
        threshold = float(config.get("threshold", 0.5))
    except (TypeError, ValueError):
        threshold = 0.5
    size = config.get("input_size")
    return ModelCard(
        path=Path(path),
        name=str(config.get("name") or Path(path).name),
        threshold=threshold,
        input_size=int(size) if isinstance(size, (int, float)) else None,
        vocabulary=vocabulary,
    )


class SegmenterCache:
    """Keeps the last loaded model so that consecutive runs (and batch runs) do not reload it.

    Thread-safe: tasks load models in worker threads. One entry only: a model can take hundreds
    of MB, and users rarely switch back and forth.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: Optional[Tuple[str, float, str]] = None
        self._segmenter: Any = None

    @staticmethod
    def _key_for(path: Path, device: str) -> Tuple[str, float, str]:
        weights = path / "model.safetensors"
        stamp = weights.stat().st_mtime if weights.exists() else 0.0
        return (str(path.resolve()), stamp, device)

    def get(self, path: Optional[Path], device: str = "auto") -> Any:
        """The :class:`rrsis_geo.Segmenter` of ``path`` on ``device`` (loaded at most once)."""
        import rrsis_geo

        if path is None:
            return rrsis_geo.load_model(None, device=device)  # the library raises its own "no model" error
        key = self._key_for(Path(path), device)
        with self._lock:
            if self._key != key:
                self._segmenter = None  # free the old model before loading the new one
                self._segmenter = rrsis_geo.load_model(str(path), device=device)
                self._key = key
            return self._segmenter

    def clear(self) -> None:
        with self._lock:
            self._key = None
            self._segmenter = None


#: Shared by the dock's tasks and the Processing algorithm.
SEGMENTERS = SegmenterCache()
