"""The distributed engine of batch runs: Dask's ``distributed`` (why Dask: README, "Batch runs").

``local_cluster(n)`` starts ``n`` single-threaded worker processes bound to 127.0.0.1 with no
dashboard, and stops them on exit; ``connect(address)`` uses a cluster someone else started.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator, Optional, Tuple

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


def threads_per_worker(workers: int) -> int:
    """The machine's cores shared between the local workers (torch threads per worker)."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


@contextlib.contextmanager
def open_cluster(workers: Optional[int] = None, address: Optional[str] = None) -> Iterator[Tuple[object, int, Optional[int]]]:
    """``(client, workers, torch threads per worker)``: a local cluster of ``workers`` processes
    (stopped on exit) or the cluster at ``address`` (left running; threads: its own)."""
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

    # the workers' own memory guard would pause or kill a worker holding a model and a scene;
    # the library bounds its memory itself (strips, block cache)
    threads = threads_per_worker(n)
    # Dask starts workers with OMP_NUM_THREADS=1 (one thread per task is its default): the model
    # gets its share of the cores instead
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ") or {})
    environ.update({name: threads for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    with dask.config.set({"distributed.worker.memory.terminate": False, "distributed.worker.memory.pause": False,
                          "distributed.worker.daemon": False, "distributed.scheduler.allowed-failures": 3,
                          "distributed.nanny.pre-spawn-environ": environ,
                          "distributed.worker.profile.enabled": False}):
        cluster = distributed.LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
            memory_limit=0, silence_logs=40,
        )
        try:
            client = distributed.Client(cluster)
            try:
                yield client, n, threads
            finally:
                client.close()
        finally:
            cluster.close()
