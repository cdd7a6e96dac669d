#!/usr/bin/env python
"""Dask or Ray for batch runs? Start-up, per-task overhead and memory of a local 2-worker cluster.

Prints one row per engine that imports here: seconds to start the cluster and run a first task,
tasks/s for 500 empty tasks and one-at-a-time round trips, resident memory of the engine's
processes (driver excluded), seconds to stop. No model: what the engine itself costs.

    .venv/bin/python scripts/bench_engines.py            # Dask (the project's engine)
    /tmp/rayenv/bin/python scripts/bench_engines.py      # a venv with ray and dask installed
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Callable, Dict, List


def _noop(x: int) -> int:
    return x


def _rss_children() -> int:
    import psutil

    return sum(p.memory_info().rss for p in psutil.Process().children(recursive=True) if p.is_running())


def bench_dask(workers: int, tasks: int) -> Dict[str, float]:
    import distributed

    started = time.perf_counter()
    cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=None, silence_logs=40)
    client = distributed.Client(cluster)
    client.submit(_noop, 0, pure=False).result()
    start_s = time.perf_counter() - started
    return _measure(start_s, lambda xs: client.gather(client.map(_noop, xs, pure=False)),
                    lambda x: client.submit(_noop, x, pure=False).result(), tasks,
                    lambda: (client.close(), cluster.close()))


def bench_ray(workers: int, tasks: int) -> Dict[str, float]:
    import ray

    started = time.perf_counter()
    ray.init(num_cpus=workers, include_dashboard=False, _node_ip_address="127.0.0.1", logging_level="ERROR")
    remote = ray.remote(num_cpus=1)(_noop)
    ray.get(remote.remote(0))
    start_s = time.perf_counter() - started
    return _measure(start_s, lambda xs: ray.get([remote.remote(x) for x in xs]), lambda x: ray.get(remote.remote(x)),
                    tasks, ray.shutdown)


def _measure(start_s: float, many: Callable, one: Callable, tasks: int, stop: Callable) -> Dict[str, float]:
    time.sleep(2.0)  # let the workers settle before reading their memory
    memory = _rss_children()
    t = time.perf_counter()
    many(list(range(tasks)))
    batch_s = time.perf_counter() - t
    t = time.perf_counter()
    for x in range(100):
        one(x)
    one_s = (time.perf_counter() - t) / 100
    t = time.perf_counter()
    stop()
    return {"start_s": start_s, "tasks_per_s": tasks / batch_s, "round_trip_ms": 1000 * one_s,
            "memory_mb": memory / 2**20, "stop_s": time.perf_counter() - t}


def main(argv: List[str] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=500)
    args = parser.parse_args(argv)
    print(f"{os.cpu_count()} cores; {args.workers} workers; {args.tasks} empty tasks")
    print("| engine | version | start + first task (s) | tasks/s (map) | round trip (ms) | engine processes' RSS (MB) | stop (s) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, bench, module in (("dask", bench_dask, "distributed"), ("ray", bench_ray, "ray")):
        try:
            version = __import__(module).__version__
        except ImportError:
            print(f"| {name} | not installed | | | | | |")
            continue
        r = bench(args.workers, args.tasks)
        print(f"| {name} | {version} | {r['start_s']:.2f} | {r['tasks_per_s']:.0f} | {r['round_trip_ms']:.1f} | "
              f"{r['memory_mb']:.0f} | {r['stop_s']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
