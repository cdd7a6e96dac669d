"""Models kept loaded between runs: for processes that answer many requests (the plugin's warm
worker, batch workers), so that only the first run pays for loading a checkpoint.

A model is reused for the same checkpoint directory, device, precision, memory format and ``compile``
setting, and only while its files are unchanged (a checkpoint retrained in place is loaded again).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Hashable, Optional, Tuple

from .catalog import resolve_checkpoint
from .options import PredictOptions

if TYPE_CHECKING:  # pragma: no cover
    from .segmenter import Segmenter


def _files_stamp(path: Path) -> Tuple[Tuple[str, int, int], ...]:
    """Name, size and modification time of the checkpoint's files: changes when it is rewritten."""
    stamp = []
    for file in sorted(p for p in path.iterdir() if p.is_file()):
        info = file.stat()
        stamp.append((file.name, info.st_size, info.st_mtime_ns))
    return tuple(stamp)


class ModelCache:
    """Up to ``size`` loaded models, the least recently used one dropped first; thread-safe.

    ``cache.load(options)`` is what :func:`rrsis_geo.predict` accepts as its ``load`` argument.
    """

    def __init__(self, size: int = 1) -> None:
        if size < 1:
            raise ValueError(f"a model cache holds at least one model, not {size}")
        self.size = size
        self.loads = 0  # models loaded so far (tests and the worker's status count them)
        self._models: "OrderedDict[Hashable, Segmenter]" = OrderedDict()
        self._lock = threading.Lock()

    def key(self, options: PredictOptions) -> Hashable:
        path = resolve_checkpoint(options.checkpoint).resolve()
        settings = options.model_settings()
        return (str(path), _files_stamp(path), str(settings["device"] or "auto"), settings["precision"],
                settings["compile"], settings["channels_last"])

    def load(self, options: PredictOptions) -> "Segmenter":
        """The model ``options`` ask for, loaded now or kept from an earlier call."""
        key = self.key(options)
        with self._lock:
            model = self._models.get(key)
            if model is not None:
                self._models.move_to_end(key)
                return model
            from .segmenter import load_model

            model = load_model(key[0], **options.model_settings())
            self.loads += 1
            self._models[key] = model
            while len(self._models) > self.size:
                self._models.popitem(last=False)
            return model

    def find(self, options: PredictOptions) -> Optional["Segmenter"]:
        """A model held for the checkpoint of ``options``, on whatever device and precision (for
        what needs only the model's text side and knowledge); None when there is none."""
        key = self.key(options)
        with self._lock:
            for held, model in reversed(self._models.items()):
                if held[:2] == key[:2]:
                    return model
        return None
