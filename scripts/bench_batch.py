#!/usr/bin/env python
"""Batch runs on the embedded default: a serial loop of `predict` against the Dask engine with 1
and 2 workers, on the same scenes (windows of the Dubai sample, "building").

Prints scenes/s and tiles/s of each, the engine's per-scene overhead against the loop, its
start-up, and the peak resident memory of each worker process. Figures, not a test.

    .venv/bin/python scripts/bench_batch.py --scenes 200

Scaling when each worker has a core of its own (the layout follows the process's CPU affinity):

    taskset -c 0 .venv/bin/python scripts/bench_batch.py --scenes 100 --size 768 --workers 1 --no-serial
    taskset -c 0,1 .venv/bin/python scripts/bench_batch.py --scenes 100 --size 768 --workers 2 --no-serial
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List

from bench_pipeline import kernel_peak_rss  # scripts/ is sys.path[0] when a script of it runs
from rrsis_geo.cpu import usable_cores

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "resources" / "sample" / "dubai_sample.tif"
EXPRESSION = "building"


def make_scenes(folder: Path, n: int, size: int) -> List[Path]:
    """``n`` windows of ``size`` px cut from the Dubai sample (overlapping when needed)."""
    import rasterio
    from rasterio.windows import Window

    scenes = []
    with rasterio.open(SAMPLE) as src:
        cols, rows = max(1, (src.width - size) // 32), max(1, (src.height - size) // 32)
        for k in range(n):
            window = Window((k % cols) * 32 % (src.width - size + 1), (k // cols % rows) * 32 % (src.height - size + 1),
                            size, size)
            profile = dict(src.profile, width=size, height=size, transform=src.window_transform(window), tiled=False)
            profile.pop("blockxsize", None), profile.pop("blockysize", None)
            path = folder / f"w{k:04d}.tif"
            with rasterio.open(path, "w", **profile) as out:
                out.write(src.read(window=window))
            scenes.append(path)
    return scenes


class PeakMemory:
    """The peak resident memory of this process's children (the engine's workers).

    Each worker's own high-water mark (``VmHWM``, kept by the kernel) is read every 0.5 s, so
    the sampling thread hardly competes with the workers for the cores and the peak is exact up
    to what a worker adds in its last half second (elsewhere its current RSS is sampled).
    """

    def __init__(self, interval: float = 0.5) -> None:
        import psutil

        self.psutil = psutil
        self.interval = interval
        self.peak: Dict[int, int] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        for p in self.psutil.Process().children(recursive=True):
            try:
                if "spawn_main" in " ".join(p.cmdline()):
                    peak = kernel_peak_rss(p.pid) or p.memory_info().rss
                    self.peak[p.pid] = max(self.peak.get(p.pid, 0), peak)
            except self.psutil.Error:
                pass

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> "PeakMemory":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def serial(scenes: List[Path], out: Path) -> Dict[str, float]:
    import torch

    import rrsis_geo

    threads = usable_cores()
    torch.set_num_threads(threads)
    started = time.perf_counter()
    segmenter = rrsis_geo.load_model(device="cpu")
    load_s = time.perf_counter() - started
    tiles = 0
    for scene in scenes:
        gdf = rrsis_geo.predict(scene, [EXPRESSION], segmenter=segmenter, output=out / f"{scene.stem}.gpkg")
        tiles += sum(s.get("tiles", 0) for s in gdf.attrs["rrsis"]["scenes"])
    return {"seconds": time.perf_counter() - started, "tiles": tiles, "load_s": load_s, "threads": threads}


def engine(scenes: List[Path], workers: int, folder: Path) -> Dict[str, float]:
    from rrsis_geo.batch import BatchSettings, run_batch
    from rrsis_geo.options import PredictOptions

    options = PredictOptions(output=folder / "merged.gpkg", device="cpu")
    settings = BatchSettings(run_dir=folder / "run", workers=workers, progress=False)
    started = time.perf_counter()
    with PeakMemory() as memory:
        summary = run_batch([str(s) for s in scenes], [EXPRESSION], options, settings, say=lambda text: None)
    peaks = sorted(memory.peak.values(), reverse=True)[:workers]
    return {"seconds": time.perf_counter() - started, "tiles": summary.tiles, "done": summary.done,
            "memory_mb": [p / 2**20 for p in peaks]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=200)
    parser.add_argument("--size", type=int, default=256, help="scene edge in pixels")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="engine runs, one per worker count")
    parser.add_argument("--no-serial", action="store_true", help="skip the serial loop of predict")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rrsis-bench-batch-"))
    try:
        (work / "scenes").mkdir()
        scenes = make_scenes(work / "scenes", args.scenes, args.size)
        rows, s = [], None
        if not args.no_serial:
            (work / "serial").mkdir()
            s = serial(scenes, work / "serial")
            rows.append((f"serial loop of predict (model loaded once, {s['threads']} threads)", s["seconds"], s["tiles"], ""))
        results = {}
        for workers in args.workers:
            folder = work / f"engine{workers}"
            folder.mkdir()
            r = results[workers] = engine(scenes, workers, folder)
            assert r["done"] == len(scenes), r
            memory = ", ".join(f"{m:.0f}" for m in r["memory_mb"])
            rows.append((f"Dask engine, {workers} worker(s)", r["seconds"], r["tiles"], memory))
        print(f"{len(scenes)} scenes of {args.size} x {args.size} px from {SAMPLE.name}, '{EXPRESSION}', default model, "
              f"CPU, {usable_cores()} usable core(s)")
        print("| run | wall (s) | scenes/s | tiles/s | worker peak RSS (MB) |")
        print("|---|---:|---:|---:|---:|")
        for name, seconds, tiles, memory in rows:
            print(f"| {name} | {seconds:.1f} | {len(scenes) / seconds:.2f} | {tiles / seconds:.1f} | {memory} |")
        one, two = results.get(1, {}).get("seconds"), results.get(2, {}).get("seconds")
        if one and two:
            print(f"2 workers / 1 worker: {one / two:.2f}x")
        if one and s:
            print(f"1 worker / serial loop: {s['seconds'] / one:.2f}x; engine overhead per scene (1 worker vs loop): "
                  f"{(one - s['seconds']) / len(scenes) * 1000:.0f} ms (includes starting the cluster and loading the "
                  f"model once per worker; the loop's load: {s['load_s']:.1f} s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
