"""What a batch worker runs: one scene to its part, with the worker's model kept loaded.

Imported in the worker processes of the distributed engine; each process keeps its own
:class:`~rrsis_geo.model_cache.ModelCache`, so a worker loads the model at its first scene and
keeps it. A scene the user can fix (unreadable, too coarse, no CRS) comes back as ``failed`` with
the library's one-line message; a bug or a lost worker comes back as the engine's error.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..errors import RRSISError
from ..extensions import import_extensions
from ..model_cache import ModelCache
from ..options import PredictOptions

_models: Optional[ModelCache] = None
_models_lock = threading.Lock()
#: the torch threads set on each of the worker's task threads (OpenMP's count is per thread)
_thread_settings = threading.local()


def _worker_index() -> int:
    try:
        from distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):
        return 0
    try:
        return int(name)
    except (TypeError, ValueError):
        return sum(str(name).encode("utf-8"))


def uses_gpu(options: PredictOptions) -> bool:
    """Whether this machine's workers run ``options``' model on a GPU (see :func:`_device`)."""
    if options.device not in (None, "auto") and not str(options.device).startswith("cuda"):
        return False
    import torch

    return torch.cuda.is_available()


def _device(options: PredictOptions) -> Optional[str]:
    """One GPU per worker: worker k of a machine with n GPUs takes cuda:(k mod n)."""
    if options.device not in (None, "auto", "cuda"):
        return options.device
    import torch

    if not torch.cuda.is_available():
        return "cpu" if options.device in (None, "auto") else options.device
    return f"cuda:{_worker_index() % torch.cuda.device_count()}"


def _setup(threads: Optional[int]) -> ModelCache:
    """The worker's model cache (made once, whichever of its task threads comes first); sets the
    calling thread's torch threads to ``threads``."""
    global _models
    with _models_lock:
        if _models is None:
            import_extensions()
            _models = ModelCache()
    if threads and getattr(_thread_settings, "threads", None) != threads:
        import torch

        torch.set_num_threads(int(threads))  # the scene's share of the machine's cores
        _thread_settings.threads = threads
    return _models


def segment_scene(
    scene: Dict[str, str], expressions: List[str], options: Dict[str, Any], part: str, threads: Optional[int] = None
) -> Dict[str, Any]:
    """Segment one scene into ``part`` (a GeoPackage, written atomically); a summary dict."""
    import rrsis_geo

    started = time.monotonic()
    models = _setup(threads)
    settings = PredictOptions.from_dict(options)
    settings = settings.replace(device=_device(settings), output=Path(part), overwrite=True)
    tiles = {"total": 0}

    def progress(done: int, total: int, message: str = "") -> None:
        tiles["total"] = max(tiles["total"], int(total))

    try:
        gdf = rrsis_geo.predict(scene["uri"], expressions, settings, progress=progress, load=models.load)
    except RRSISError as exc:  # what the user can fix: recorded, the run goes on
        return {"id": scene["id"], "status": "failed", "error": " ".join(exc.message.split()), "kind": "input",
                "error_type": type(exc).__name__}
    counts = gdf.groupby("expression").size().to_dict() if len(gdf) else {}
    return {
        "id": scene["id"], "status": "done", "count": int(len(gdf)),
        "counts": {e: int(counts.get(e, 0)) for e in expressions}, "tiles": int(tiles["total"]),
        "seconds": round(time.monotonic() - started, 3), "worker_pid": os.getpid(), "model_loads": models.loads,
        "crs": gdf.crs.to_string() if gdf.crs is not None else None,
    }
