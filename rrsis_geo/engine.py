"""The sliding-window loop: read tiles, run the model, blend, hand out finished strips.

One scene, several expressions, one pass over the pixels::

    reader thread(s) ──batches (pinned buffers)──▶ main thread: to device, stretch + normalise,
    model per expression (bf16 autocast where native), crop/resize, blend into the StripAccumulator
    ──finished strips (async copy to host)──▶ strip worker thread: GeoTIFF writers, polygons

* Reader threads each open their own dataset handle (rasterio handles are not thread-safe) and
  fill buffers of their own pool; batch ``k`` is read by reader ``k % readers`` and consumed in
  order, so results never depend on thread timing.
* Tiles without a single valid pixel are not sent to the model.
* Progress is reported and the cancel flag checked once per batch.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from .errors import Cancelled, WindowReadError, cancel_requested
from .raster import (
    FULL_BYTE_RANGE,
    RasterSource,
    Window,
    block_cache_budget,
    bounded_block_cache,
    raise_for_damaged_block,
    read_pixels,
    read_skipping_damage,
    read_valid,
)
from .read_faults import check_policy, sorted_windows
from .segmenter import EncodedText, Segmenter
from .sinks import StripSink
from .grid import AUTO_RESAMPLE_FACTOR, TilePlan, plan_tiles, resolve_resample  # noqa: F401 - re-exported
from .tiling import StripAccumulator, Tile, TileGrid, blend_window, pad_reflect

ProgressFn = Callable[[int, int, str], None]

_TORCH_DTYPES = {
    "uint8": torch.uint8,
    "int16": torch.int16,
    "uint16": torch.uint16,
    "int32": torch.int32,
    "float32": torch.float32,
}


# ------------------------------------------------------------------------------------------
# reading
@dataclass
class _Buffers:
    """One batch worth of host memory (pinned on CUDA), owned by one reader."""

    images: torch.Tensor  # [B, 3, T, T] raw values
    valid: torch.Tensor  # [B, fh, fw] bool
    owner: int
    event: Any = None  # CUDA event after which the buffers may be refilled


@dataclass
class _Batch:
    index: int
    tiles: List[Tile]
    has_data: List[bool]  # per tile: holds at least one valid pixel (else skipped)
    masked: List[bool]  # per tile: valid[i] holds a real mask (else all valid)
    buffers: _Buffers

    @property
    def n_run(self) -> int:
        return sum(self.has_data)


class _Reader(threading.Thread):
    def __init__(
        self,
        rank: int,
        n_readers: int,
        source: RasterSource,
        plan: TilePlan,
        batches: Sequence[Sequence[Tile]],
        batch_size: int,
        prefetch: int,
        pin: bool,
        stop: threading.Event,
        skip_damaged: bool = False,
    ) -> None:
        super().__init__(name=f"rrsis-reader-{rank}", daemon=True)
        self.skip_damaged = skip_damaged
        self.unread: List[Window] = []  # blocks that could not be read (skip_damaged only)
        self.rank = rank
        self.n_readers = n_readers
        self.source = source
        self.plan = plan
        self.batches = batches
        self.stop = stop
        self.out: "queue.Queue[Any]" = queue.Queue(maxsize=prefetch)
        self.free: "queue.Queue[_Buffers]" = queue.Queue()
        T = plan.model_size
        fh, fw = plan.footprint
        dtype = _TORCH_DTYPES[source.read_dtype]
        for _ in range(prefetch + 2):
            self.free.put(
                _Buffers(
                    torch.empty((batch_size, 3, T, T), dtype=dtype, pin_memory=pin),
                    torch.empty((batch_size, min(fh, plan.grid.height), min(fw, plan.grid.width)), dtype=torch.bool, pin_memory=pin),
                    rank,
                )
            )
        self.count = 0  # batches read, for stats
        self.seconds = 0.0

    def _put(self, item: Any) -> None:
        while not self.stop.is_set():
            try:
                self.out.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _get_buffers(self) -> Optional[_Buffers]:
        while not self.stop.is_set():
            try:
                buffers = self.free.get(timeout=0.1)
            except queue.Empty:
                continue
            if buffers.event is not None:
                buffers.event.synchronize()  # the device has finished copying out of them
                buffers.event = None
            return buffers
        return None

    def run(self) -> None:
        try:
            with self.source.open() as ds:
                for k in range(self.rank, len(self.batches), self.n_readers):
                    buffers = self._get_buffers()
                    if buffers is None:
                        return
                    started = time.perf_counter()
                    batch = self._read(ds, k, buffers)
                    self.seconds += time.perf_counter() - started
                    self._put(batch)
        except BaseException as exc:  # handed to the main thread, which re-raises it
            self._put(exc)

    def _read(self, ds, k: int, buffers: _Buffers) -> _Batch:
        region = self.source.region
        images = buffers.images.numpy()
        valid_np = buffers.valid.numpy()
        T = self.plan.model_size
        tiles = list(self.batches[k])
        has_data, masked = [], []
        slot = 0
        for tile in tiles:
            window = Window(region.col_off + tile.col_off, region.row_off + tile.row_off, tile.width, tile.height)
            mh, mw = self.plan.content_shape(tile)
            out_shape = (mh, mw) if self.plan.resample else None
            try:
                valid = read_valid(ds, self.source, window)
                if valid is not None and not valid.any():
                    has_data.append(False)
                    masked.append(False)
                    continue
                if (mh, mw) == (T, T):
                    read_pixels(ds, self.source, window, out=images[slot], out_shape=out_shape)
                    pixels = None
                else:  # region smaller than a tile: reflect-pad below, the engine crops back
                    pixels = read_pixels(ds, self.source, window, out_shape=out_shape)
            except WindowReadError as exc:
                if not self.skip_damaged:
                    raise_for_damaged_block(ds, self.source, window, exc)
                pixels, valid, unread = read_skipping_damage(ds, self.source, window, out_shape)
                self.unread.extend(unread)
                if not valid.any():
                    has_data.append(False)
                    masked.append(False)
                    continue
            if pixels is not None:
                images[slot] = pixels if pixels.shape[1:] == (T, T) else pad_reflect(pixels, T, T)
            if valid is not None:
                valid_np[slot, : tile.height, : tile.width] = valid
            has_data.append(True)
            masked.append(valid is not None)
            slot += 1
        self.count += 1
        return _Batch(k, tiles, has_data, masked, buffers)


# ------------------------------------------------------------------------------------------
# strips out
class StripWorker(threading.Thread):
    """Feeds finished strips to the sinks in a thread of its own, so that writing GeoTIFFs and
    polygonising overlap with the model. At most ``depth`` strips wait in its queue."""

    def __init__(self, sinks: Sequence[StripSink], depth: int = 3) -> None:
        super().__init__(name="rrsis-strips", daemon=True)
        self.sinks = list(sinks)
        self.inbox: "queue.Queue[Any]" = queue.Queue(maxsize=depth)
        self.error: Optional[BaseException] = None
        self.abort = threading.Event()
        self.seconds = 0.0

    def submit(self, row0: int, probs: torch.Tensor, valid: torch.Tensor, event: Any) -> None:
        while True:
            if self.error is not None:
                raise self.error
            try:
                self.inbox.put((row0, probs, valid, event), timeout=0.1)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        """Wait until every strip is written and the sinks are closed; re-raise their error."""
        self.submit_end()
        self.join()
        if self.error is not None:
            raise self.error

    def submit_end(self) -> None:
        while self.is_alive():
            try:
                self.inbox.put(None, timeout=0.1)
                return
            except queue.Full:
                if self.error is not None:
                    return

    def _abort_sinks(self) -> None:
        for sink in self.sinks:
            try:
                sink.abort()
            except Exception:  # the first error is the one worth reporting
                pass

    def run(self) -> None:
        try:
            while True:
                item = self.inbox.get()
                if item is None or self.abort.is_set():
                    break
                row0, probs, valid, event = item
                if event is not None:
                    event.synchronize()
                started = time.perf_counter()
                p, v = probs.numpy(), valid.numpy()
                for sink in self.sinks:
                    sink.write(row0, p, v)
                self.seconds += time.perf_counter() - started
            if not self.abort.is_set():
                started = time.perf_counter()
                for sink in self.sinks:
                    sink.close()
                self.seconds += time.perf_counter() - started
            else:
                self._abort_sinks()
        except BaseException as exc:
            self.error = exc
            self._abort_sinks()
            # keep draining so that the producer never blocks on a dead worker
            while True:
                try:
                    if self.inbox.get(timeout=0.5) is None:
                        break
                except queue.Empty:
                    break


# ------------------------------------------------------------------------------------------
# the loop
@dataclass
class EngineOptions:
    batch_size: int = 4
    readers: int = 1
    prefetch: int = 2
    #: 'fail': a pixel window that cannot be read ends the run with WindowReadError; 'skip': its
    #: unreadable blocks become nodata and are listed in ``RunStats.extra["unread_windows"]``
    on_read_error: str = "fail"
    #: average the model over each tile's flips (:meth:`Segmenter.probabilities`)
    tta: bool = False


@dataclass
class RunStats:
    """What one scene's run did and where the time went (reported by the benchmark)."""

    tiles: int = 0
    tiles_run: int = 0  # tiles with data, sent to the model
    batches: int = 0
    expressions: int = 0
    seconds_total: float = 0.0
    seconds_model: float = 0.0  # model calls (CUDA: measured with events)
    seconds_waiting_for_reader: float = 0.0
    seconds_reading: float = 0.0  # summed over reader threads
    seconds_strips: float = 0.0  # GeoTIFF writing + polygonising, in the strip worker
    accumulator_rows: int = 0
    accumulator_max_rows_in_flight: int = 0
    accumulator_bytes: int = 0
    resampled: bool = False
    footprint: Tuple[int, int] = (0, 0)
    extra: Dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> Dict[str, Any]:
        out = dict(self.__dict__)
        out.update(out.pop("extra"))
        return out


def _batches(grid: TileGrid, batch_size: int) -> List[List[Tile]]:
    tiles = list(grid)
    return [tiles[i : i + batch_size] for i in range(0, len(tiles), batch_size)]


class _Normaliser:
    """Raw values -> model input on the device: stretch to 0..1, then (x - mean) / std.

    Done as one per-channel affine and a clamp, ``clamp(x * scale + shift)``, on the batch as
    read (NCHW: the inner loop runs along a row), then copied once into the model's memory
    format; the clamp is left out where values cannot leave its bounds (8-bit, full-range
    stretch: for the default model it changes none of the 256 values, bit for bit). Both steps
    write into buffers kept for the whole run, so the returned tensor is only valid until the
    next call: fresh 6 MB tensors per batch cost ~3 000 page faults and 4.9 ms for 8 uint8 tiles
    of 256 px on 2 cores, against 1.2–1.4 ms into kept buffers (same values).
    """

    def __init__(self, source: RasterSource, segmenter: Segmenter) -> None:
        dev = segmenter.device
        stretch = source.stretch or FULL_BYTE_RANGE

        def column(values) -> torch.Tensor:
            return torch.tensor(list(values), dtype=torch.float64).view(1, 3, 1, 1)

        low = column(s[0] for s in stretch)
        span = column(s[1] - s[0] for s in stretch)
        mean, std = column(segmenter.mean), column(segmenter.std)
        # (clamp((x - low) / span, 0, 1) - mean) / std, folded in float64 before rounding once
        bounds = ((0.0 - mean) / std, (1.0 - mean) / std)
        tensors = (1.0 / (span * std), -(low / span + mean) / std, torch.minimum(*bounds), torch.maximum(*bounds))
        self.scale, self.shift, self.low, self.high = (t.to(device=dev, dtype=torch.float32) for t in tensors)
        # 8-bit values under the full-range stretch cannot leave 0..1: the clamp would be a no-op
        full_range = all(lo <= 0.0 and hi >= 255.0 for lo, hi in stretch)
        self.needs_clamp = not (source.read_dtype == "uint8" and full_range)
        self.memory_format = torch.channels_last if segmenter.channels_last else torch.contiguous_format
        self._stage: Optional[torch.Tensor] = None  # NCHW float32
        self._out: Optional[torch.Tensor] = None  # in the model's layout; None when that is NCHW

    def _buffers(self, raw: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        stage = self._stage
        if stage is None or stage.shape[1:] != raw.shape[1:] or stage.shape[0] < raw.shape[0]:
            stage = self._stage = torch.empty(raw.shape, dtype=torch.float32, device=self.scale.device)
            nchw = self.memory_format == torch.contiguous_format
            self._out = None if nchw else torch.empty_like(stage, memory_format=self.memory_format)
        n = raw.shape[0]
        return stage[:n], (None if self._out is None else self._out[:n])

    def __call__(self, raw: torch.Tensor) -> torch.Tensor:
        """``raw`` ([n, 3, T, T], any dtype) normalised; ``raw`` itself is never written."""
        stage, out = self._buffers(raw)
        # (torch.addcmul would fuse these two passes but rounds differently: fused multiply-add)
        stage.copy_(raw).mul_(self.scale).add_(self.shift)
        if self.needs_clamp:
            stage.clamp_(self.low, self.high)
        return stage if out is None else out.copy_(stage)


def run_scene(
    source: RasterSource,
    segmenter: Segmenter,
    texts: Sequence[EncodedText],
    plan: TilePlan,
    sinks: Sequence[StripSink],
    *,
    options: Optional[EngineOptions] = None,
    on_tiles: Optional[Callable[[int], None]] = None,
    cancel: Any = None,
) -> RunStats:
    """Predict every expression over ``source.region``; finished strips go to ``sinks``.

    ``on_tiles(n)`` is called after each batch with the number of tiles it held; ``cancel`` is
    checked between batches and raises :class:`Cancelled`. Returns the run's statistics; when
    no tile held any valid pixel, ``stats.tiles_run`` is 0 (the caller decides what that means).
    """
    started = time.perf_counter()
    options = options or EngineOptions()
    device = segmenter.device
    cuda = device.type == "cuda"
    grid = plan.grid
    B = max(1, int(options.batch_size))
    batches = _batches(grid, B)
    n_readers = max(1, min(int(options.readers), len(batches)))
    skip_damaged = check_policy(options.on_read_error) == "skip"
    stats = RunStats(tiles=len(grid), expressions=len(texts), resampled=plan.resample, footprint=plan.footprint)

    stop = threading.Event()
    readers = [
        _Reader(r, n_readers, source, plan, batches, B, max(1, options.prefetch), cuda, stop, skip_damaged)
        for r in range(n_readers)
    ]
    worker = StripWorker(sinks)
    accumulator = StripAccumulator(grid.width, grid.tile_height, len(texts), device)
    normalise = _Normaliser(source, segmenter)
    weights: Dict[Tuple[int, int], torch.Tensor] = {}
    model_events: List[Tuple[Any, Any]] = []
    last_col = grid.shape[1] - 1

    def emit(upto: int) -> None:
        row0, probs, valid = accumulator.flush(upto)
        event = None
        if cuda:
            host_p = torch.empty(probs.shape, dtype=probs.dtype, pin_memory=True)
            host_v = torch.empty(valid.shape, dtype=valid.dtype, pin_memory=True)
            host_p.copy_(probs, non_blocking=True)
            host_v.copy_(valid, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            probs, valid = host_p, host_v
        worker.submit(row0, probs, valid, event)

    resources = contextlib.ExitStack()  # closed in the finally below
    resources.enter_context(bounded_block_cache(block_cache_budget(source, plan.footprint[0])))
    for reader in readers:
        reader.start()
    worker.start()
    finished = False
    try:
        with torch.inference_mode():
            for k in range(len(batches)):
                if cancel_requested(cancel):
                    raise Cancelled("cancelled by the user; nothing was written")
                waited = time.perf_counter()
                item = _next_batch(readers[k % n_readers], worker)
                stats.seconds_waiting_for_reader += time.perf_counter() - waited
                if isinstance(item, BaseException):
                    raise item
                batch: _Batch = item
                n = batch.n_run
                buffers = batch.buffers
                probs = None
                if n:
                    raw = buffers.images[:n].to(device, non_blocking=True)
                    valid_dev = buffers.valid[:n].to(device, non_blocking=True) if any(batch.masked) else None
                    if cuda:
                        buffers.event = torch.cuda.Event()
                        buffers.event.record()
                        readers[buffers.owner].free.put(buffers)
                    x = normalise(raw)
                    if segmenter.compiled and n < B:  # keep one shape for torch.compile
                        x = torch.cat([x, x.new_zeros((B - n, *x.shape[1:]))])
                    t0 = time.perf_counter()
                    ev0 = torch.cuda.Event(enable_timing=True) if cuda else None
                    if ev0 is not None:
                        ev0.record()
                    with segmenter.autocast():
                        per_text = [segmenter.probabilities(x, text, tta=options.tta)[:n] for text in texts]
                    # [n, E, T, T]; one expression needs no copy
                    probs = per_text[0].unsqueeze(1) if len(per_text) == 1 else torch.stack(per_text, dim=1)
                    if cuda:
                        ev1 = torch.cuda.Event(enable_timing=True)
                        ev1.record()
                        model_events.append((ev0, ev1))
                    else:
                        stats.seconds_model += time.perf_counter() - t0
                    stats.tiles_run += n
                slot = 0
                for tile, has_data, masked in zip(batch.tiles, batch.has_data, batch.masked):
                    if has_data:
                        mh, mw = plan.content_shape(tile)
                        p = probs[slot, :, :mh, :mw]
                        if (mh, mw) != (tile.height, tile.width):
                            p = F.interpolate(p[None], size=(tile.height, tile.width), mode="bilinear", align_corners=False)[0]
                        key = (tile.height, tile.width)
                        if key not in weights:
                            weights[key] = blend_window(tile.height, tile.width, device)
                        v = valid_dev[slot, : tile.height, : tile.width] if masked else None
                        accumulator.add(tile.row_off, tile.col_off, p, weights[key], v)
                        slot += 1
                    if tile.grid_col == last_col:
                        emit(grid.final_row(tile.grid_row))
                if not cuda or not n:  # (on CUDA, released above once the copy was queued)
                    readers[buffers.owner].free.put(buffers)
                stats.batches += 1
                if on_tiles is not None:
                    on_tiles(len(batch.tiles))
        worker.finish()
        finished = True
    finally:
        stop.set()
        if not finished:
            worker.abort.set()
            worker.submit_end()
        for reader in readers:
            reader.join(timeout=10)
        worker.join(timeout=30)
        resources.close()
    if cuda:
        torch.cuda.synchronize(device)
        stats.seconds_model = sum(a.elapsed_time(b) for a, b in model_events) / 1000.0
    stats.seconds_reading = sum(r.seconds for r in readers)
    if skip_damaged:
        stats.extra["unread_windows"] = sorted_windows([w for r in readers for w in r.unread])
    stats.seconds_strips = worker.seconds
    stats.accumulator_rows = accumulator.capacity
    stats.accumulator_max_rows_in_flight = accumulator.max_rows_in_flight
    stats.accumulator_bytes = accumulator.nbytes
    stats.seconds_total = time.perf_counter() - started
    return stats


def _next_batch(reader: _Reader, worker: StripWorker) -> Any:
    """The reader's next batch, watching for a failed strip worker meanwhile."""
    while True:
        if worker.error is not None:
            raise worker.error
        try:
            return reader.out.get(timeout=0.1)
        except queue.Empty:
            if not reader.is_alive() and reader.out.empty():
                raise RuntimeError("the tile reader stopped unexpectedly") from None
