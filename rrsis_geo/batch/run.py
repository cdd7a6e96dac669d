"""A batch run from start to end: check, plan, run on the engine, record, merge, summarise.

The driver never segments: it collects the scenes, opens the run directory (resuming a run of
the same expressions, options and model), submits each pending or failed scene as one task to
the distributed engine, records each answer as it arrives, and merges the parts at the end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..errors import InputError
from ..io_utils import check_output_target
from ..options import PredictOptions
from ..vectorize import layer_names
from .rundir import DONE, FAILED, RunDir, checkpoint_fingerprint, write_json
from .scenes import Scene, collect_scenes

#: options that name per-scene outputs: a batch run writes one part per scene and one merged result
NOT_IN_BATCH = ("prob_out", "mask_out")


@dataclass
class BatchSettings:
    """How a batch runs (its prediction settings are a :class:`PredictOptions`)."""

    run_dir: Path
    workers: Optional[int] = None  # local workers (default: one per GPU, else one)
    cluster: Optional[str] = None  # address of an existing Dask scheduler
    fail_fast: bool = False
    asset: Optional[str] = None  # STAC asset key
    formats: Sequence[str] = ()  # extra merged outputs: fgb, parquet
    progress: bool = True


@dataclass
class BatchSummary:
    """What a batch run did (also written to ``RUN_DIR/summary.json``)."""

    scenes: int = 0
    done: int = 0  # this run
    resumed: int = 0  # done by an earlier run, not run again
    failed: Dict[str, str] = field(default_factory=dict)  # scene label -> one-line reason
    pending: int = 0  # not run (fail-fast, interrupted)
    tiles: int = 0
    seconds: float = 0.0
    workers: int = 0
    counts: Dict[str, int] = field(default_factory=dict)  # merged polygons per expression
    output: Optional[str] = None
    written: List[str] = field(default_factory=list)  # the merged files (a resume may replace them)
    note: Optional[str] = None
    interrupted: bool = False

    def to_dict(self) -> Dict[str, Any]:
        return dict(self.__dict__)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.pending and not self.interrupted


class Interrupted(KeyboardInterrupt):
    """Ctrl-C: what was done is recorded; the same command resumes."""


def fingerprint(expressions: Sequence[str], options: PredictOptions) -> Dict[str, Any]:
    """What makes a run's results: its expressions, options and model (its files' hashes)."""
    from .. import __version__
    from ..catalog import resolve_checkpoint

    checkpoint = resolve_checkpoint(options.checkpoint)
    settings = {k: v for k, v in _worker_options(options).items() if k != "checkpoint"}
    return {"expressions": list(expressions), "options": settings,
            "model": {"path": str(checkpoint), **checkpoint_fingerprint(checkpoint)}, "version": __version__}


def merged_outputs(options: PredictOptions, settings: BatchSettings) -> List[Tuple[Path, str]]:
    """The files the merge writes: the GeoPackage and one per extra format, beside it."""
    from .merge import extra_path

    output = Path(options.output).expanduser().absolute()
    return [(output, "merged GeoPackage")] + [(extra_path(output, f), f"merged {f}") for f in settings.formats]


def check(sources: Sequence[str], expressions: Sequence[str], options: PredictOptions, settings: BatchSettings):
    """Everything that can be refused before a worker starts: the cleaned expressions and the scenes."""
    from ..pipeline import clean_expressions

    if options.output is None:
        raise InputError("a batch run merges its scenes into one GeoPackage: name it with the output option")
    for name in NOT_IN_BATCH:
        if getattr(options, name) is not None:
            raise InputError(f"{name} writes per-scene rasters, which batch runs do not: run predict for those")
    run_dir = RunDir(settings.run_dir)
    for target, what in merged_outputs(options, settings):
        if not run_dir.owns(target):  # a resume replaces the result it wrote itself
            check_output_target(target, overwrite=options.overwrite, what=what)
    texts = clean_expressions(expressions)
    return texts, collect_scenes(sources, settings.asset)


def run_batch(
    sources: Sequence[str], expressions: Sequence[str], options: PredictOptions, settings: BatchSettings,
    say: Callable[[str], None] = print,
) -> BatchSummary:
    """Run ``expressions`` over every scene of ``sources`` (see the module docstring)."""
    texts, scenes = check(sources, expressions, options, settings)
    run_dir = RunDir(settings.run_dir)
    with run_dir.lock():
        return _run_locked(scenes, texts, options, settings, run_dir, say)


def _run_locked(scenes: List[Scene], texts: List[str], options: PredictOptions, settings: BatchSettings,
                run_dir: RunDir, say: Callable[[str], None]) -> BatchSummary:
    # read before this run's summary replaces the earlier one
    replace = options.overwrite or all(run_dir.owns(t) for t, _ in merged_outputs(options, settings))
    summary = BatchSummary(scenes=len(scenes))
    summary.written = [str(t) for t, _ in merged_outputs(options, settings) if run_dir.owns(t)]
    summary.note = run_dir.open(fingerprint(texts, options))
    if summary.note:
        say(summary.note)
    layers = layer_names(texts)
    todo = []
    for scene in scenes:
        if run_dir.state(scene.id).get("state") == DONE or run_dir.adopt(scene.id, layers):
            summary.resumed += 1
        else:
            todo.append(scene)
    started = time.monotonic()
    try:
        if todo:
            _run_on_engine(todo, texts, options, settings, run_dir, summary)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        summary.seconds = round(time.monotonic() - started, 3)
        _collect_failures(scenes, run_dir, summary)
        write_json(run_dir.root / "summary.json", summary.to_dict())
    if summary.interrupted:
        raise Interrupted()
    _merge(scenes, texts, options, settings, run_dir, summary, replace)
    write_json(run_dir.root / "summary.json", summary.to_dict())
    return summary


#: options of the merge, not of a scene's part: changing them re-merges, it does not re-run scenes
MERGE_OPTIONS = ("output", "overwrite", "crs")


def _worker_options(options: PredictOptions) -> Dict[str, Any]:
    """The options a worker runs a scene with; the checkpoint as the absolute folder whose files
    were fingerprinted (the same on every worker of a shared file system)."""
    from ..catalog import resolve_checkpoint

    values = {k: v for k, v in options.to_dict().items() if k not in MERGE_OPTIONS}
    values["checkpoint"] = str(resolve_checkpoint(options.checkpoint).absolute())
    return values


def _run_on_engine(todo: List[Scene], texts: List[str], options: PredictOptions, settings: BatchSettings,
                   run_dir: RunDir, summary: BatchSummary) -> None:
    from .cluster import _distributed, open_cluster
    from .progress import BatchProgress
    from .tasks import segment_scene, uses_gpu

    worker_options = _worker_options(options)
    local = not settings.cluster
    with open_cluster(settings.workers, settings.cluster, gpu=local and uses_gpu(options),
                      compiled=bool(options.compile)) as (client, workers, threads):
        summary.workers = workers
        futures = {}
        for scene in todo:
            future = client.submit(segment_scene, scene.to_dict(), texts, worker_options, str(run_dir.part(scene.id)),
                                   threads, key=f"rrsis-{scene.id}-{time.time_ns()}", pure=False)
            futures[future] = scene
        progress = BatchProgress(len(todo), enabled=settings.progress)
        try:
            for future in _distributed().as_completed(futures):
                scene = futures.pop(future)
                outcome = _outcome(future)
                _record(scene, outcome, run_dir, summary)
                progress.update(outcome, scene)
                if outcome["status"] != "done" and settings.fail_fast:
                    break
        finally:
            progress.close()
            if futures:  # fail-fast or Ctrl-C: the rest stays pending for the next run
                client.cancel(list(futures))
            summary.pending = len(futures)


def _outcome(future) -> Dict[str, Any]:
    try:
        return future.result()
    except Exception as exc:  # a bug in the library, or a scene that killed its workers again and again
        text = " ".join(f"{type(exc).__name__}: {exc}".split())
        return {"status": "failed", "error": text[:500], "kind": "internal"}


def _record(scene: Scene, outcome: Dict[str, Any], run_dir: RunDir, summary: BatchSummary) -> None:
    if outcome["status"] == "done" and not run_dir.part(scene.id).is_file():
        outcome = {"status": "failed", "kind": "internal", "error": f"the worker wrote {run_dir.part(scene.id)}, "
                   "which this machine cannot see: --cluster needs the run directory on a file system its workers share"}
    if outcome["status"] == "done":
        run_dir.record_done(scene.id, {k: v for k, v in outcome.items() if k != "status"})
        summary.done += 1
        summary.tiles += int(outcome.get("tiles", 0))
    else:
        run_dir.record_failed(scene.id, outcome["error"], outcome.get("kind", "internal"))


def _collect_failures(scenes: List[Scene], run_dir: RunDir, summary: BatchSummary) -> None:
    summary.failed = {}
    for scene in scenes:
        state = run_dir.state(scene.id)
        if state.get("state") == FAILED:
            summary.failed[scene.label] = state.get("error", "")


def _merge(scenes: List[Scene], texts: List[str], options: PredictOptions, settings: BatchSettings,
           run_dir: RunDir, summary: BatchSummary, replace: bool) -> None:
    from .merge import merge_parts

    parts = [(scene, run_dir.part(scene.id)) for scene in scenes if run_dir.state(scene.id).get("state") == DONE]
    if not parts:
        return
    output = Path(options.output).expanduser().absolute()
    metadata = {"RRSIS_SCENES": str(len(parts)), "RRSIS_FAILED_SCENES": str(len(summary.failed))}
    summary.counts = merge_parts(parts, texts, output, overwrite=replace,
                                 formats=settings.formats, metadata=metadata, crs=options.crs)
    summary.output = str(output)
    summary.written = sorted(set(summary.written) | {str(t) for t, _ in merged_outputs(options, settings)})
