#!/usr/bin/env python
"""Benchmark: the whole prediction pipeline versus the bare model forward, in one run.

For each ``--size`` a synthetic-but-real GeoTIFF (UTM, ``--gsd`` m/px, 8-bit RGB, tiled 512 px,
DEFLATE) is written block by block into a temporary directory; then

* ``pipeline``: ``rrsis_geo.predict`` end to end (open, stretch, read, normalise, model, blend,
  vectorise, GeoPackage written and renamed into place);
* ``forward``: the bare model (``Segmenter.probabilities``) on the same number of tiles and
  expressions, batch for batch, on real tiles of the scene already normalised on the device.

Both run after a warm-up (so ``--compile`` and cuDNN autotuning are paid before timing). Printed:
tiles/s, MP/s and km2/s at the scene's GSD, the pipeline/forward ratio, the share of wall time
the model was busy (CUDA events / CPU clock), where the rest went, the peak host RSS *during*
the prediction (the kernel's high-water mark, reset before it: no sampling thread competes with
the model; see :class:`PeakRSS`) and, on CUDA, the peak GPU memory. Figures only: nothing here is
a pass/fail test.

    .venv/bin/python scripts/bench_pipeline.py --device cpu --preset tiny-lgce --size 512
    .venv/bin/python scripts/bench_pipeline.py --device cuda --preset lgce-swinb-bert --size 8192 20000 --compile
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def write_scene(path: Path, size: int, gsd: float, seed: int = 0) -> Path:
    """A ``size x size`` RGB scene with texture and rectangles, written 512 rows at a time."""
    import rasterio
    from affine import Affine

    rng = np.random.default_rng(seed)
    block = 512
    profile = dict(
        driver="GTiff", width=size, height=size, count=3, dtype="uint8", crs="EPSG:32640",
        transform=Affine(gsd, 0, 500000.0, 0, -gsd, 2800000.0), tiled=True, blockxsize=block,
        blockysize=block, compress="deflate", bigtiff="IF_SAFER",
    )
    xs = np.arange(size, dtype=np.float32)
    with rasterio.open(path, "w", **profile) as ds:
        for r0 in range(0, size, block):
            rows = min(block, size - r0)
            ys = np.arange(r0, r0 + rows, dtype=np.float32)[:, None]
            base = 110 + 40 * np.sin(xs[None, :] / 57.0) * np.cos(ys / 71.0)
            strip = np.empty((3, rows, size), np.uint8)
            for band, shift in enumerate((0.0, 9.0, 23.0)):
                noise = rng.normal(0, 12, size=(rows, size)).astype(np.float32)
                strip[band] = np.clip(base + shift + noise, 0, 255).astype(np.uint8)
            for _ in range(max(1, size // 256)):  # "buildings": bright rectangles
                h, w = rng.integers(8, 40, size=2)
                r, c = rng.integers(0, max(1, rows - h)), rng.integers(0, max(1, size - w))
                strip[:, r : r + h, c : c + w] = rng.integers(180, 250)
            ds.write(strip, window=rasterio.windows.Window(0, r0, size, rows))
    return path


def write_scene_elsewhere(path: Path, size: int, gsd: float) -> Path:
    """:func:`write_scene` in a child process, so that its memory never counts in our RSS."""
    import multiprocessing

    child = multiprocessing.get_context("spawn").Process(target=write_scene, args=(path, size, gsd))
    child.start()
    child.join()
    if child.exitcode != 0 or not path.exists():
        raise SystemExit(f"writing the {size} px scene failed (exit code {child.exitcode})")
    return path


def kernel_peak_rss(pid: "int | str" = "self") -> "int | None":
    """The kernel's record of a process's peak resident memory (``VmHWM``), in bytes; None
    where ``/proc`` does not have it."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class PeakRSS:
    """This process's peak resident memory inside the ``with`` block; ``peak`` in bytes.

    On Linux the kernel keeps the peak (``VmHWM``), which writing 5 to ``/proc/self/clear_refs``
    resets: nothing runs during the prediction. Elsewhere a thread samples the RSS every 10 ms,
    which slows a 2-core CPU run by ~4 % (it preempts the model's threads), so timings taken there
    are pessimistic.
    """

    def __init__(self, interval: float = 0.01) -> None:
        import psutil

        self.process = psutil.Process()
        self.interval = interval
        self.peak = self.process.memory_info().rss
        self._kernel = False  # the kernel's peak was reset on entry and is read on exit
        self._stop = threading.Event()
        self._thread: "threading.Thread | None" = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> "PeakRSS":
        try:
            with open("/proc/self/clear_refs", "w") as refs:
                refs.write("5")
            self._kernel = kernel_peak_rss() is not None
        except OSError:
            self._kernel = False
        if not self._kernel:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        kernel = kernel_peak_rss() if self._kernel else None
        self.peak = max(self.peak, kernel or 0, self.process.memory_info().rss)


def scene_batch(seg, scene: Path, batch: int, tile: int):
    """``batch`` normalised tiles read from ``scene`` (along its first row), on the model's device.

    The bare forward runs on the pixels the pipeline sees, normalised the same way and in the same
    memory format, so that the two timings differ only in what the pipeline adds around the model.
    """
    import rasterio
    import torch
    from rasterio.windows import Window

    with rasterio.open(scene) as ds:
        size = min(tile, ds.width, ds.height)
        step = max(1, (ds.width - size) // max(1, batch - 1))
        tiles = [ds.read((1, 2, 3), window=Window(min(i * step, ds.width - size), 0, size, size)) for i in range(batch)]
    x = torch.as_tensor(np.stack(tiles)).float().div_(255.0)
    if size < tile:
        x = torch.nn.functional.pad(x, (0, tile - size, 0, tile - size), mode="reflect")
    mean = torch.tensor(seg.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(seg.std, dtype=torch.float32).view(1, 3, 1, 1)
    x = ((x - mean) / std).to(seg.device)
    # in the layout the engine hands the model, so that neither timing pays a copy the other does not
    return x.contiguous(memory_format=torch.channels_last) if seg.channels_last else x


def bare_forward(seg, texts, tiles: int, images) -> float:
    """Seconds for the model alone on ``tiles`` tiles (per expression), batched like the engine."""
    import torch

    cuda = seg.device.type == "cuda"
    batch = images.shape[0]
    encoded = [seg.encode(t) for t in texts]

    def once(n: int) -> None:
        with torch.inference_mode(), seg.autocast():
            for text in encoded:
                seg.probabilities(images[:n], text)

    once(batch)  # warm-up
    if cuda:
        torch.cuda.synchronize(seg.device)
    started = time.perf_counter()
    done = 0
    while done < tiles:
        n = min(batch, tiles - done)
        once(batch if seg.compiled else n)  # the engine pads a last short batch only when compiling
        done += n
    if cuda:
        torch.cuda.synchronize(seg.device)
    return time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", type=int, nargs="+", default=[1024], help="scene edge(s) in px")
    parser.add_argument("--gsd", type=float, default=0.3, help="scene ground sample distance (m/px)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--checkpoint", help="checkpoint directory")
    group.add_argument("--preset", default="tiny-lgce", help="random-init preset (rrsis_geo.models.presets)")
    parser.add_argument("--expressions", type=int, default=1, help="expressions per run")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--tile-size", type=int)
    parser.add_argument("--readers", type=int)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"),
                        help="model arithmetic (auto: bf16 where the device has it natively)")
    parser.add_argument("--workdir", help="where to write scenes (default: a temporary directory)")
    parser.add_argument(
        "--repeat", type=int, default=1,
        help="pipeline and bare forward this many times each, alternating; the medians are printed "
             "(the bare forward alone varies by ~10 %% between runs on a shared VM)",
    )
    parser.add_argument(
        "--skip-forward", action="store_true",
        help="do not time the bare forward (halves the run; for memory figures on large scenes)",
    )
    args = parser.parse_args(argv)
    # a `timeout` (SIGTERM) still removes the temporary scenes
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    import torch

    import rrsis_geo
    from rrsis_geo.pipeline import _default_batch_size

    with tempfile.TemporaryDirectory(prefix="rrsis-bench-", dir=args.workdir) as tmp:
        work = Path(tmp)
        checkpoint = args.checkpoint
        if checkpoint is None:
            from rrsis_geo.models.presets import init_checkpoint

            checkpoint = init_checkpoint(args.preset, work / args.preset)
        seg = rrsis_geo.load_model(checkpoint, device=args.device, compile=args.compile, precision=args.precision)
        texts = ["building along the road", "water", "vegetation near the road", "road", "unpaved land"][: args.expressions]
        texts += [f"building number {i}" for i in range(len(texts), args.expressions)]
        batch = args.batch_size or _default_batch_size(seg)
        tile = args.tile_size or seg.input_size
        print(f"model {seg.name} ({seg.config.get('architecture')}) on {seg.device}, tile {tile} px, batch {batch}, "
              f"{len(texts)} expression(s), compile={args.compile}, {seg.precision}, torch {torch.__version__}, "
              f"{torch.get_num_threads()} CPU threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")
        kwargs = dict(segmenter=seg, tile_size=tile, batch_size=batch, readers=args.readers, resample=False)

        warm = write_scene(work / "warm.tif", max(tile * 2, 256), args.gsd)
        rrsis_geo.predict(warm, texts, output=work / "warm.gpkg", **kwargs)

        header = (f"{'size':>7} {'tiles':>6} {'pipe t/s':>9} {'fwd t/s':>8} {'ratio':>6} {'MP/s':>7} {'km2/s':>8} "
                  f"{'model%':>7} {'in-run':>7} {'read s':>7} {'wait s':>7} {'strip s':>7} {'RSS0 MiB':>8} {'RSS MiB':>8} {'GPU MiB':>8}")
        rows = []
        for size in args.size:
            scene = write_scene_elsewhere(work / f"scene{size}.tif", size, args.gsd)
            if seg.device.type == "cuda":
                torch.cuda.synchronize(seg.device)
                torch.cuda.reset_peak_memory_stats(seg.device)
            walls, forwards, models = [], [], []
            for repetition in range(max(1, args.repeat)):
                out = work / f"out{size}-{repetition}.gpkg"
                with PeakRSS() as rss:
                    rss_before = rss.peak
                    started = time.perf_counter()
                    gdf = rrsis_geo.predict(scene, texts, output=out, **kwargs)
                    walls.append(time.perf_counter() - started)
                run_tiles = gdf.attrs["rrsis"]["scenes"][0]["tiles_run"]
                models.append(gdf.attrs["rrsis"]["scenes"][0]["seconds_model"])
                forwards.append(float("nan") if args.skip_forward else bare_forward(
                    seg, texts, run_tiles, scene_batch(seg, scene, batch, tile)
                ))
            wall, forward, model = statistics.median(walls), statistics.median(forwards), statistics.median(models)
            if len(walls) > 1:
                ratios = [f / w for w, f in zip(walls, forwards)]
                print(f"  {size}x{size}: {len(walls)} runs, pipeline {min(walls):.2f}-{max(walls):.2f} s, forward "
                      f"{min(forwards):.2f}-{max(forwards):.2f} s, ratio per pair {min(ratios):.2f}-{max(ratios):.2f}")
            gpu = torch.cuda.max_memory_allocated(seg.device) / 2**20 if seg.device.type == "cuda" else float("nan")
            stats = gdf.attrs["rrsis"]["scenes"][0]
            pipe_rate, fwd_rate = run_tiles / wall, run_tiles / forward
            mp = size * size / 1e6
            km2 = mp * 1e6 * args.gsd**2 / 1e6
            rows.append(
                f"{size:>7} {run_tiles:>6} {pipe_rate:>9.2f} {fwd_rate:>8.2f} {pipe_rate / fwd_rate:>6.2f} "
                f"{mp / wall:>7.3f} {km2 / wall:>8.4f} {100 * model / wall:>6.1f}% {run_tiles / model if model else float('nan'):>7.2f} "
                f"{stats['seconds_reading']:>7.2f} {stats['seconds_waiting_for_reader']:>7.2f} "
                f"{stats['seconds_strips']:>7.2f} {rss_before / 2**20:>8.0f} {rss.peak / 2**20:>8.0f} {gpu:>8.0f}"
            )
            print(f"  {size}x{size}: {len(gdf)} polygons, pipeline {wall:.2f} s, forward {forward:.2f} s, "
                  f"accumulator {stats['accumulator_bytes'] / 2**20:.1f} MiB")
            scene.unlink()
        print(header)
        print("\n".join(rows))
        print("tiles/s: a tile counts once whatever the number of expressions (medians with --repeat); ratio = pipeline / bare forward; model% = model "
              "time / pipeline wall time; in-run = tiles/s of the model calls inside the pipeline (against fwd t/s: "
              "how much slower the model runs beside the pipeline's threads); read s = reader thread(s) busy; wait s = main thread waiting for tiles; "
              "strip s = GeoTIFF/polygon worker busy; RSS0 / RSS = resident memory before / peak during the prediction")
    return 0


if __name__ == "__main__":
    sys.exit(main())
