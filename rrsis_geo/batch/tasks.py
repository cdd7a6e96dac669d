"""What a batch worker runs: one scene to its part, with the worker's model kept loaded.

Imported in the worker processes of the distributed engine; each process keeps its own
:class:`~rrsis_geo.model_cache.ModelCache`, so a worker loads the model at its first scene and
keeps it. A scene the user can fix (unreadable, too coarse, no CRS) comes back as ``failed`` with
the library's one-line message; a bug or a lost worker comes back as the engine's error.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..errors import RRSISError
from ..extensions import import_extensions
from ..model_cache import ModelCache
from ..options import PredictOptions

_models: Optional[ModelCache] = None
_threads_set = False


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


def _device(options: PredictOptions) -> Optional[str]:
    """One GPU per worker: worker k of a machine with n GPUs takes cuda:(k mod n)."""
    if options.device not in (None, "auto", "cuda"):
        return options.device
    import torch

    if not torch.cuda.is_available():
        return "cpu" if options.device in (None, "auto") else options.device
    return f"cuda:{_worker_index() % torch.cuda.device_count()}"


def _setup(threads: Optional[int]) -> ModelCache:
    global _models, _threads_set
    if _models is None:
        import_extensions()
        _models = ModelCache()
    if threads and not _threads_set:
        import torch

        torch.set_num_threads(int(threads))  # the machine's cores shared between its workers
        _threads_set = True
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
