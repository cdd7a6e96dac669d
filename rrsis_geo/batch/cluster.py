"""The distributed engine of batch runs: Dask's ``distributed`` (why Dask: README, "Batch runs").

``open_cluster(n)`` starts ``n`` worker processes bound to 127.0.0.1 with no dashboard (the HTTP
servers Dask starts anyway serve no route), laid out by :func:`worker_layout`, and stops them on
exit; ``open_cluster(address=...)`` uses a cluster someone else started.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Dict, Iterator, Optional, Tuple

from ..cpu import usable_cores
from ..errors import DependencyError, InputError


def _distributed():
    try:
        import distributed
    except ImportError as exc:  # pragma: no cover - installed with the package
        raise DependencyError(f"batch runs need Dask's distributed package ({exc}); pip install 'dask[distributed]'") from exc
    return distributed


def default_workers() -> int:
    """One worker per GPU, else one."""
    try:
        import torch

        return max(1, torch.cuda.device_count())
    except ImportError:  # pragma: no cover
        return 1


@dataclass(frozen=True)
class WorkerLayout:
    """How a local cluster uses the machine: worker processes (one model each), the scenes each
    runs at once (Dask threads per worker), and the torch threads of each scene."""

    workers: int
    scenes_at_once: int
    torch_threads: int


#: the most scenes a CPU worker runs at once: measured on 2 cores only; more scenes also hold more
#: buffers and accumulators at once (each run checks its memory as if it were alone)
MAX_SCENES_AT_ONCE = 4
#: GDAL's block cache of a worker per scene it runs at once (MB; see :func:`worker_environment`)
BLOCK_CACHE_MB_PER_SCENE = 256


def worker_layout(workers: int, gpu: bool, cores: Optional[int] = None, compiled: bool = False) -> WorkerLayout:
    """The layout of ``workers`` local workers on ``cores`` cores (default: the cores this process may use).

    On a GPU, or with a compiled model (torch.compile is not thread-safe), a worker runs one
    scene at a time and its share of the cores feeds it. On the CPU a worker runs one scene per
    core of its share (at most :data:`MAX_SCENES_AT_ONCE`), the share's threads divided between
    them: measured on 2 cores (README, "Batch runs"), two scenes at once on one thread each give
    1.19-1.25x the scenes/s of one scene on two threads, because the default model does not keep
    two threads busy (its bare forward runs 1.57x faster on 2 threads than on 1, not 2x).
    """
    share = max(1, (cores or usable_cores()) // max(1, workers))
    if gpu or compiled:
        return WorkerLayout(workers, 1, share)
    scenes = min(share, MAX_SCENES_AT_ONCE)
    return WorkerLayout(workers, scenes, share // scenes)


def worker_environment(layout: WorkerLayout) -> Dict[str, str]:
    """Environment of the local workers: Dask's ``pre-spawn-environ`` with the layout's threads.

    Dask starts workers with ``OMP_NUM_THREADS=1`` and ``MALLOC_TRIM_THRESHOLD_=65536`` (glibc
    returning memory after every tensor); both made each scene 40 % slower (README). A worker
    running several scenes at once gets one cap on GDAL's block cache, which is one setting for
    the whole process, for all of them: each run's own cap (:func:`rrsis_geo.raster.bounded_block_cache`,
    which leaves a ``GDAL_CACHEMAX`` from the environment alone) would be restored by another
    run out of order. A ``GDAL_CACHEMAX`` of the user's is kept.
    """
    import dask

    _distributed()  # its defaults enter dask.config when it is imported
    environ = {k: str(v) for k, v in (dask.config.get("distributed.nanny.pre-spawn-environ") or {}).items()}
    environ.update({name: str(layout.torch_threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    if layout.scenes_at_once > 1 and not os.environ.get("GDAL_CACHEMAX"):
        environ["GDAL_CACHEMAX"] = str(BLOCK_CACHE_MB_PER_SCENE * layout.scenes_at_once)
    return environ


@contextlib.contextmanager
def open_cluster(workers: Optional[int] = None, address: Optional[str] = None, gpu: bool = False,
                 compiled: bool = False) -> Iterator[Tuple[object, int, Optional[int]]]:
    """``(client, workers, torch threads per scene)``: a local cluster of ``workers`` processes laid
    out by :func:`worker_layout` (stopped on exit), or the cluster at ``address`` (left running;
    threads: its own)."""
    distributed = _distributed()
    if address:
        try:
            client = distributed.Client(address, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise InputError(f"cannot reach the Dask scheduler at {address}: {exc}") from exc
        try:
            try:
                client.wait_for_workers(1, timeout=60)
            except (OSError, TimeoutError) as exc:
                raise InputError(f"the Dask scheduler at {address} has no worker (waited 60 s)") from exc
            yield client, len(client.scheduler_info().get("workers", {})), None
        finally:
            client.close()
        return
    n = int(workers or default_workers())
    if n < 1:
        raise InputError(f"--workers {n}: give at least 1")
    import dask

    layout = worker_layout(n, gpu, compiled=compiled)
    environ = worker_environment(layout)
    # the workers' own memory guard would pause or kill a worker holding a model and a scene;
    # the library bounds its memory itself (strips, block cache). Without a dashboard the
    # scheduler and the workers still start an HTTP server (health, metrics, /info pages about
    # the workers): it gets no routes, so it answers nothing but 404.
    with dask.config.set({"distributed.worker.memory.terminate": False, "distributed.worker.memory.pause": False,
                          "distributed.worker.daemon": False, "distributed.scheduler.allowed-failures": 3,
                          "distributed.nanny.pre-spawn-environ": environ,
                          "distributed.worker.profile.enabled": False,
                          "distributed.scheduler.http.routes": [], "distributed.worker.http.routes": []}):
        cluster = distributed.LocalCluster(
            n_workers=n, threads_per_worker=layout.scenes_at_once, processes=True, host="127.0.0.1", dashboard_address=None,
            memory_limit=0, silence_logs=40,
        )
        try:
            client = distributed.Client(cluster)
            try:
                yield client, n, layout.torch_threads
            finally:
                client.close()
        finally:
            cluster.close()
