"""Every setting of a prediction in one place: its type, default, range, help and front ends.

:class:`PredictOptions` is the one options schema. The command line derives its ``predict``
flags from it (:func:`add_arguments`, :func:`from_arguments`), the worker protocol carries it
(:meth:`PredictOptions.to_dict` / :meth:`PredictOptions.from_dict`, validated on arrival), the
QGIS dock validates with it and Processing derives its parameters from it. Adding an option is
one field here plus its widgets in the front ends that offer it (``front_ends``); a test fails
when a front end misses a field it should offer.

Standard library only: the QGIS plugin imports this module inside QGIS's own process, which must
not load torch or another copy of GDAL.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from .errors import Fix, InputError

PathLike = Union[str, "os.PathLike[str]"]
BBox = Tuple[float, float, float, float]

#: the front ends an option can appear in
CLI, WORKER, DOCK, PROCESSING = "cli", "worker", "dock", "processing"
EVERYWHERE = (CLI, WORKER, DOCK, PROCESSING)


class ReadErrorPolicy(str, Enum):
    """What a run does with pixels that cannot be read (a damaged or truncated file)."""

    FAIL = "fail"  # stop with the scene and the window named
    SKIP = "skip"  # unreadable windows become nodata, listed in a warning and the GeoPackage


class Precision(str, Enum):
    """The model's arithmetic."""

    AUTO = "auto"  # bf16 autocast on GPUs that support it and on CPUs with native bf16, else float32
    BF16 = "bf16"
    FP32 = "fp32"


class MemoryFormat(str, Enum):
    """How the model's tensors are laid out (``auto``: per device, from measurements)."""

    AUTO = "auto"  # channels-last on a CPU, contiguous on CUDA (rrsis_geo.segmenter.auto_channels_last)
    CHANNELS_LAST = "channels-last"
    CONTIGUOUS = "contiguous"

    @property
    def channels_last(self) -> Optional[bool]:
        """``load_model``'s ``channels_last``: None lets the device choose."""
        if self is MemoryFormat.AUTO:
            return None
        return self is MemoryFormat.CHANNELS_LAST


class Device(str, Enum):
    """Where the model runs (``cuda:N`` picks one GPU; the front ends with a list offer these)."""

    AUTO = "auto"  # CUDA if available, else the CPU
    CPU = "cpu"
    CUDA = "cuda"


@dataclass(frozen=True)
class OptionSpec:
    """What the schema says about one option (read with :func:`specs`)."""

    name: str
    kind: Any  # int, float, bool, str, "path", "bands", "bbox", or an Enum subclass
    default: Any
    help: str
    flag: Optional[str] = None  # the command line's flag (None: the name, dashed)
    metavar: Optional[str] = None
    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    high_open: bool = False
    front_ends: Tuple[str, ...] = (CLI,)
    dock: Optional[str] = None  # where the dock offers it, in the dock's words
    processing: Optional[str] = None  # the Processing parameter's name
    label: Optional[str] = None  # the Processing caption (None: the help text)
    choice_labels: Tuple[Tuple[str, str], ...] = ()  # (value, how the dock and Processing list it)

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    def choice_label(self, value: Any) -> str:
        """How the dock and Processing list ``value`` of a choice."""
        text = _plain(value)
        return dict(self.choice_labels).get(text, str(text))

    @property
    def choices(self) -> Tuple[str, ...]:
        return tuple(m.value for m in self.kind) if isinstance(self.kind, type) and issubclass(self.kind, Enum) else ()

    def range_text(self) -> str:
        lo = "(" if self.low_open else "["
        high = math.inf if self.high is None else self.high
        hi = ")" if self.high_open or high == math.inf else "]"
        return f"{lo}{self.low}, {high}{hi}"


def option(default: Any, kind: Any, help: str, **spec: Any) -> Any:
    """A :class:`PredictOptions` field that carries its :class:`OptionSpec` (as Deepness does)."""
    return field(default=default, metadata={"option": dict(kind=kind, help=help, **spec)})


@dataclass
class PredictOptions:
    """Every setting of :func:`rrsis_geo.predict`, checked by :meth:`validate` before anything is opened."""

    checkpoint: Optional[PathLike] = option(
        None, "path", "checkpoint directory or installed model name (default: see `models`)",
        metavar="DIR", front_ends=EVERYWHERE, dock="Model", processing="CHECKPOINT")
    device: str = option(
        "auto", Device, "auto (CUDA if available), cpu, cuda or cuda:N",
        metavar="DEV", front_ends=EVERYWHERE, dock="Device", processing="DEVICE", label="Device",
        choice_labels=(("auto", "Automatic"), ("cpu", "CPU"), ("cuda", "GPU (CUDA)")))
    output: Optional[PathLike] = option(
        None, "path", "GeoPackage to write (one layer per expression)",
        flag="--output", metavar="OUT.gpkg", front_ends=EVERYWHERE, dock="Output → GeoPackage file",
        processing="OUTPUT")
    overwrite: bool = option(
        False, bool, "replace existing output files",
        front_ends=(CLI, WORKER, DOCK), dock="Output → Replace if it exists")
    tile_size: Optional[int] = option(
        None, int, "tile edge in model pixels (default: the model's input size)",
        metavar="PX", low=16, front_ends=EVERYWHERE, dock="Advanced → Tile size", processing="TILE_SIZE",
        label="Tile size in pixels (0: the model's input size)")
    overlap: float = option(
        0.25, float, "tile overlap fraction (default 0.25)",
        metavar="F", low=0.0, high=0.9, high_open=True, front_ends=EVERYWHERE, dock="Advanced → Tile overlap",
        processing="OVERLAP", label="Tile overlap (fraction of a tile)")
    batch_size: Optional[int] = option(
        None, int, "tiles per model call (default 8 on a CPU with bf16, 4 without, 16 on CUDA)", metavar="N", low=1)
    threshold: Optional[float] = option(
        None, float, "probability threshold (default: the model's, usually 0.5)",
        metavar="P", low=0.0, high=1.0, low_open=True, high_open=True, front_ends=EVERYWHERE, dock="Threshold",
        processing="THRESHOLD", label="Probability threshold (empty: the model's)")
    bands: Optional[List[int]] = option(
        None, "bands", "1-based bands fed as red,green,blue, e.g. 4,3,2",
        metavar="R,G,B", front_ends=EVERYWHERE, dock="Advanced → Bands", processing="BANDS",
        label="Bands read as red, green, blue, e.g. 4,3,2 (empty: automatic)")
    bbox: Optional[BBox] = option(
        None, "bbox", "process only this box (in each scene's CRS)",
        metavar="MINX,MINY,MAXX,MAXY", front_ends=EVERYWHERE, dock="Extent", processing="EXTENT")
    allow_no_crs: bool = option(False, bool, "accept scenes without a CRS (file coordinates)")
    prob_out: Optional[PathLike] = option(
        None, "path", "probability GeoTIFF, one band per expression ({scene} for several scenes)", metavar="P.tif")
    mask_out: Optional[PathLike] = option(
        None, "path", "mask GeoTIFF (1 target, 0 background, 255 nodata)", metavar="M.tif")
    simplify: float = option(0.0, float, "simplification tolerance in map units", metavar="UNITS", low=0.0)
    min_area: float = option(0.0, float, "drop polygons smaller than this (m2)", metavar="M2", low=0.0)
    fill_holes: float = option(0.0, float, "fill holes smaller than this (m2)", metavar="M2", low=0.0)
    resample: Optional[bool] = option(
        None, bool, "resample to the model's training GSD (default: when it differs by > 25 %)")
    readers: Optional[int] = option(None, int, "reader threads (default 1 on CPU)", metavar="N", low=1)
    tta: bool = option(
        False, bool, "test-time flips: average the model over each tile and its three flips (4x the model time; "
        "measured better on vehicles and roads, worse on water)",
        front_ends=EVERYWHERE, dock="Advanced → Test-time flips", processing="TTA",
        label="Average the model over each tile's flips (test-time augmentation; 4x the model time)")
    compile: bool = option(
        False, bool, "torch.compile the model: long runs (2 CPU cores: 5-10 % faster after a one-off compilation "
        "of 8-70 s; needs a C++ compiler)")
    precision: str = option(
        "auto", Precision,
        "model arithmetic: auto (bf16 autocast on GPUs and on CPUs with native bf16, else float32), bf16 or fp32",
        front_ends=(CLI, WORKER))
    memory_format: str = option(
        "auto", MemoryFormat,
        "model tensor layout: auto (channels-last on a CPU, where it was measured faster; contiguous on CUDA), "
        "channels-last or contiguous",
        front_ends=(CLI, WORKER))
    force_gsd: bool = option(
        False, bool, "run expressions even on scenes far coarser than the GSD their category was learned at",
        front_ends=EVERYWHERE, dock="Advanced → Coarse scenes: Run anyway", processing="FORCE_GSD",
        label="Run on scenes coarser than the model learned (force GSD)")
    strict_vocabulary: bool = option(
        False, bool, "refuse (exit 2) expressions far from anything the model learned, instead of warning")
    on_read_error: str = option(
        "fail", ReadErrorPolicy,
        "pixels that cannot be read: fail (default) or skip (nodata, listed in a warning and the GeoPackage)",
        front_ends=EVERYWHERE, dock="Advanced → Unreadable pixels", processing="ON_READ_ERROR",
        label="Pixels that cannot be read: fail, or skip (nodata, listed in a warning)",
        choice_labels=(("fail", "Stop the run"), ("skip", "Skip (nodata)")))
    crs: Optional[str] = option(
        None, str, "write the polygons in this CRS (e.g. EPSG:4326); needed for scenes in different CRSs",
        metavar="CRS")

    def validate(self) -> "PredictOptions":
        """Normalise each value to its kind; raise :class:`InputError` for the first one out of
        range (naming the option as ``fix``); return self."""
        for spec in specs():
            setattr(self, spec.name, check_value(spec, getattr(self, spec.name)))
        return self

    def to_dict(self, front_end: Optional[str] = None) -> Dict[str, Any]:
        """JSON-ready values (paths as text, enums as their value), of the options ``front_end``
        carries (all without one)."""
        return {s.name: _plain(getattr(self, s.name)) for s in specs(front_end)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "PredictOptions":
        """Options from ``values`` (e.g. a worker message), validated; keys that are not options
        are ignored (a newer front end may send more), ``None`` means the default."""
        known = {s.name: s for s in specs()}
        given = {k: v for k, v in values.items() if k in known and v is not None}
        return cls(**given).validate()

    def replace(self, **changes: Any) -> "PredictOptions":
        """A copy with ``changes`` (keywords of :func:`rrsis_geo.predict`), validated."""
        unknown = sorted(set(changes) - {s.name for s in specs()})
        if unknown:
            raise TypeError(f"predict() got unexpected keyword argument(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **changes).validate()

    def model_settings(self) -> Dict[str, Any]:
        """The keywords of :func:`rrsis_geo.load_model` these options choose (besides the checkpoint)."""
        return {"device": self.device, "compile": bool(self.compile), "precision": self.precision,
                "channels_last": MemoryFormat(self.memory_format).channels_last}


def specs(front_end: Optional[str] = None) -> List[OptionSpec]:
    """The schema, in field order; only the options ``front_end`` offers when given."""
    out = []
    for f in dataclasses.fields(PredictOptions):
        spec = OptionSpec(name=f.name, default=f.default, **f.metadata["option"])
        if front_end is None or front_end in spec.front_ends:
            out.append(spec)
    return out


def spec(name: str) -> OptionSpec:
    """The :class:`OptionSpec` of option ``name``."""
    for s in specs():
        if s.name == name:
            return s
    raise KeyError(name)


# ------------------------------------------------------------------------------- checking
def _fail(spec: OptionSpec, text: str, example: Any = None) -> InputError:
    return InputError(text, fix=Fix(spec.name, example=example))


def check_value(spec: OptionSpec, value: Any) -> Any:
    """``value`` as ``spec``'s kind, in range; :class:`InputError` otherwise."""
    if value is None:
        return spec.default  # None means "the default", as predict(device=None) always did
    kind = spec.kind
    if kind == "bands":
        return check_bands(value, spec)
    if kind == "bbox":
        return check_bbox(value, spec)
    if kind == "path":
        if not isinstance(value, (str, os.PathLike)):
            raise _fail(spec, f"{spec.name} must be a path, not {value!r}")
        return value
    if isinstance(kind, type) and issubclass(kind, Enum):
        return _check_choice(spec, value)
    if kind is bool:
        if not isinstance(value, bool):
            raise _fail(spec, f"{spec.name} must be true or false, not {value!r}")
        return value
    if kind is str:
        return str(value)
    return _check_number(spec, value)


def _check_choice(spec: OptionSpec, value: Any) -> str:
    text = value.value if isinstance(value, Enum) else str(value)
    if spec.kind is Device and text.startswith("cuda:") and text[5:].isdigit():
        return text  # one GPU of several
    if text not in spec.choices:
        extra = " or cuda:N" if spec.kind is Device else ""
        raise _fail(spec, f"{spec.name} {text!r} must be one of {', '.join(spec.choices)}{extra}")
    return text


def _check_number(spec: OptionSpec, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = spec.kind(value)
        except (TypeError, ValueError):
            raise _fail(spec, f"{spec.name} must be a number, not {value!r}") from None
    if spec.kind is int:
        if not math.isfinite(float(value)):
            raise _fail(spec, f"{spec.name} must be a whole number, not {value!r}")
        if float(value) != int(value):
            raise _fail(spec, f"{spec.name} must be a whole number, not {value!r}")
        value = int(value)
    else:
        value = float(value)
    if not math.isfinite(float(value)):
        raise _fail(spec, f"{spec.name} must be a finite number, not {value!r}")
    low = -math.inf if spec.low is None else spec.low
    high = math.inf if spec.high is None else spec.high
    below = value <= low if spec.low_open else value < low
    above = value >= high if spec.high_open else value > high
    if math.isfinite(value) and not below and not above:
        return value
    if spec.name == "tile_size":  # the engine's own words: the model's input size is best
        raise _fail(spec, f"tile size {value} is too small; use at least 16 px (the model's input size is best)")
    if spec.kind is int and spec.high is None:
        raise _fail(spec, f"{spec.name.replace('_', ' ')} {value} must be at least {spec.low:g}")
    raise _fail(spec, f"{spec.name} {value} is out of range {spec.range_text()}")


def check_bands(value: Any, spec: Optional[OptionSpec] = None) -> List[int]:
    """Three 1-based band numbers (red, green, blue)."""
    spec = spec or globals()["spec"]("bands")
    try:
        bands = [int(b) for b in value]
    except (TypeError, ValueError):
        bands = []
    if len(bands) != 3 or any(b < 1 for b in bands):
        raise _fail(spec, f"bands {value!r} must be three 1-based band numbers (red, green, blue)", (4, 3, 2))
    return bands


def check_bbox(value: Any, spec: Optional[OptionSpec] = None) -> BBox:
    """``(minx, miny, maxx, maxy)`` with max > min."""
    spec = spec or globals()["spec"]("bbox")
    try:
        box = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        box = ()
    if len(box) != 4 or not all(math.isfinite(v) for v in box) or not (box[2] > box[0] and box[3] > box[1]):
        raise _fail(spec, f"bbox {value!r} must be minx, miny, maxx, maxy with maxx > minx and maxy > miny")
    return box  # type: ignore[return-value]


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, tuple):
        return list(value)
    return value


# ------------------------------------------------------------------------------- text values
def _numbers(text: str, spec: OptionSpec, count: int, kind: Callable) -> List:
    parts = [p.strip() for p in text.replace(" ", ",").split(",") if p.strip()]
    try:
        values = [kind(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != count:
        example = (4, 3, 2) if spec.kind == "bands" else "minx,miny,maxx,maxy"
        raise InputError(f"{spec.name} {text!r} is not {count} comma-separated numbers", fix=Fix(spec.name, example=example))
    return values


def parse_bands(text: Optional[str]) -> Optional[List[int]]:
    """``"4,3,2"`` -> ``[4, 3, 2]``; empty -> None (automatic)."""
    if text is None or not str(text).strip():
        return None
    return check_bands(_numbers(str(text), spec("bands"), 3, int))


def parse_bbox(text: Optional[str]) -> Optional[BBox]:
    """``"minx,miny,maxx,maxy"`` -> a box; empty -> None (the whole scene)."""
    if text is None or not str(text).strip():
        return None
    box = _numbers(str(text), spec("bbox"), 4, float)
    if not (box[2] > box[0] and box[3] > box[1]):
        raise InputError(f"bbox {text!r} must be minx,miny,maxx,maxy with maxx > minx and maxy > miny", fix=Fix("bbox"))
    return tuple(box)  # type: ignore[return-value]


# ------------------------------------------------------------------------------- the command line
def add_arguments(parser: argparse.ArgumentParser, names: Optional[Sequence[str]] = None) -> None:
    """The flags of every option the command line offers (``-o`` for the output), or of ``names``."""
    for s in specs(CLI):
        if names is not None and s.name not in names:
            continue
        flags = ["-o", s.cli_flag] if s.name == "output" else [s.cli_flag]
        common = dict(dest=s.name, help=s.help.replace("%", "%%"))
        if s.kind is bool and s.default is None:
            parser.add_argument(*flags, action=argparse.BooleanOptionalAction, default=None, **common)
        elif s.kind is bool:
            parser.add_argument(*flags, action="store_true", **common)
        elif s.choices and s.kind is not Device:
            parser.add_argument(*flags, choices=s.choices, default=s.default, **common)
        elif s.kind in (int, float):
            parser.add_argument(*flags, type=s.kind, default=s.default, metavar=s.metavar, **common)
        else:  # text: paths, device, CRS, and bands / bbox parsed by from_arguments
            parser.add_argument(*flags, default=s.default, metavar=s.metavar, **common)


def from_arguments(args: argparse.Namespace) -> PredictOptions:
    """:class:`PredictOptions` from the flags :func:`add_arguments` added (all or some), validated."""
    values = {s.name: getattr(args, s.name) for s in specs(CLI) if hasattr(args, s.name)}
    if "bands" in values:
        values["bands"] = parse_bands(values["bands"])
    if "bbox" in values:
        values["bbox"] = parse_bbox(values["bbox"])
    return PredictOptions(**values).validate()


# ------------------------------------------------------------------------------- advice
#: the front ends that word a fix, and the API's own keywords
PYTHON = "python"


def _shown(value: Any, front_end: str) -> str:
    value = _plain(value)
    if front_end == PYTHON:
        return repr(value)
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def advice(fix: Fix, front_end: str) -> Optional[str]:
    """How ``front_end`` (cli, dock, processing, python) says "use this option": ``pass
    --on-read-error skip``, ``choose Advanced → Unreadable pixels: Skip``, ``set ON_READ_ERROR to
    skip``, ``set on_read_error='skip'``; None where that front end does not offer the option."""
    try:
        s = spec(fix.option)
    except KeyError:  # not a prediction option (e.g. a training setting): name it as is
        s = OptionSpec(name=fix.option, kind=str, default=None, help="", front_ends=(CLI,))
    value = fix.value
    if s.kind is bool and value is None:
        value = True
    if value is None and fix.example is None and front_end in (CLI, PYTHON):
        return None  # the message names the option already ("overlap 0.95 is out of range ...")
    if front_end == CLI:
        name = s.cli_flag if value is not False else "--no-" + s.cli_flag[2:]
        text = f"pass {name}" + ("" if s.kind is bool or value is None else f" {_shown(value, CLI)}")
        example = f" (e.g. {s.cli_flag} {_shown(fix.example, CLI)})" if value is None and fix.example is not None else ""
    elif front_end == DOCK:
        if s.dock is None or DOCK not in s.front_ends:
            return None
        if s.kind is bool:  # a tick box's caption says what it does: no effect appended
            return f"{'tick' if value else 'untick'} {s.dock}"
        elif value is not None and s.choices:
            text = f"choose {s.dock}: {s.choice_label(value)}"
        else:
            text = f"change {s.dock}" + ("" if value is None else f" to {_shown(value, DOCK)}")
        example = f" (e.g. {_shown(fix.example, DOCK)})" if value is None and fix.example is not None else ""
    elif front_end == PROCESSING:
        if s.processing is None or PROCESSING not in s.front_ends:
            return None
        text = f"set {s.processing}" + ("" if value is None else f" to {_shown(value, PROCESSING)}")
        example = f" (e.g. {_shown(fix.example, PROCESSING)})" if value is None and fix.example is not None else ""
    else:
        text = f"set {s.name}" + ("" if value is None else f"={_shown(value, PYTHON)}")
        example = f" (e.g. {s.name}={_shown(fix.example, PYTHON)})" if value is None and fix.example is not None else ""
    return text + example + (f" {fix.effect}" if fix.effect else "")


def describe(error: BaseException, front_end: str) -> str:
    """``error``'s one line with its fix (if any) in ``front_end``'s words."""
    fix = getattr(error, "fix", None)
    message = getattr(error, "message", None) or " ".join(str(error).split())
    words = advice(fix, front_end) if fix is not None else None
    if not words:
        return message
    return f"{message}, or {words}" if fix.alternative else f"{message}; {words}"
