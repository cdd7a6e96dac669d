"""Run library calls on a fresh Python thread.

Why: pyproj (used by rasterio/geopandas inside :mod:`rrsis_geo`) ships its own PROJ, while QGIS
links the system PROJ. On QGIS 3.22 (Debian) calling pyproj from a ``QgsTask`` worker thread
crashes the process (SIGSEGV in ``proj_create``) from the second task on, once QGIS has used
that pooled thread; from a thread QGIS has never touched it works. Processing also runs
algorithms in ``QgsTask`` threads, so both the dock's task and the algorithm go through
:func:`call_in_fresh_thread`. The calling thread just waits; cancel flags and progress callbacks
keep working because they are plain thread-safe callables.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, TypeVar

T = TypeVar("T")


def call_in_fresh_thread(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``function(*args, **kwargs)`` on a new thread; its result, or its exception re-raised."""
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["value"] = function(*args, **kwargs)
        except BaseException as exc:  # handed back to the caller below
            outcome["error"] = exc

    worker = threading.Thread(target=target, name="rrsis-library", daemon=True)
    worker.start()
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
