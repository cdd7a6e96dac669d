"""Batch runs: one expression set over thousands of scenes, on a distributed engine (Dask),
with a run directory that makes a run resumable and one merged result.

::

    rrsis-geo batch 'tiles/*.tif' -e building -e road -o city.gpkg --run-dir runs/city --workers 2

Modules: :mod:`.scenes` (what to run), :mod:`.rundir` (what is done), :mod:`.cluster` (the
engine), :mod:`.tasks` (what a worker runs), :mod:`.merge` (one result), :mod:`.run` (the driver).
"""

from .run import BatchSettings, BatchSummary, Interrupted, run_batch

__all__ = ["BatchSettings", "BatchSummary", "Interrupted", "run_batch"]
