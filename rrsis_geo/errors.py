"""Errors a user can cause.

Every error raised for bad input is an :class:`RRSISError`; its message says what went wrong
*and what to do about it*. The command line prints the message without a traceback and exits
with status 2; the QGIS plugin shows it in the message bar.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional


@dataclass(frozen=True)
class Fix:
    """The option that fixes an error, as data: each front end words it in its own terms (a
    command-line flag, a dock control, a Processing parameter, a keyword of :func:`predict`;
    :func:`rrsis_geo.options.advice`)."""

    option: str  # a field of rrsis_geo.options.PredictOptions
    value: Any = None  # the value that fixes it (None: the option needs a value of the user's)
    example: Any = None  # a value to show when ``value`` is None
    effect: str = ""  # what the fix does, e.g. "to run it anyway"
    alternative: bool = False  # the message ends with another way out: "use finer imagery, or <fix>"

    def to_dict(self) -> dict:
        """JSON-ready fields (the worker protocol's ``fix``)."""
        fields = (("option", self.option), ("value", self.value), ("example", self.example), ("effect", self.effect),
                  ("alternative", self.alternative or None))
        return {k: v for k, v in fields if v not in (None, "")}

    @classmethod
    def from_dict(cls, values: Any) -> Optional["Fix"]:
        """The :class:`Fix` of a ``to_dict()`` (None for anything else)."""
        if not isinstance(values, dict) or not isinstance(values.get("option"), str):
            return None
        return cls(values["option"], values.get("value"), values.get("example"), str(values.get("effect") or ""),
                   bool(values.get("alternative")))


class RRSISError(Exception):
    """Base class of all user-facing errors. Its text is always one line (GDAL's own messages,
    quoted in ours, may hold line breaks), so that the CLI, the Processing log and the plugin's
    worker can pass it on as is.

    ``message`` says what is wrong; ``fix``, when there is one, the option that fixes it. ``str()``
    words the fix as :func:`rrsis_geo.predict`'s keyword; the command line, the dock and
    Processing word it as their flag, control or parameter (:func:`rrsis_geo.options.describe`).
    """

    exit_code = 2

    def __init__(self, *args: Any, fix: Optional[Fix] = None) -> None:
        super().__init__(*args)
        self.fix = fix

    @property
    def message(self) -> str:
        """What is wrong, without the advice (one line)."""
        return " ".join((str(self.args[0]) if self.args else "").split())

    def __str__(self) -> str:
        if self.fix is None:
            return " ".join(super().__str__().split())
        from .options import describe

        return describe(self, "python")

    def __reduce__(self):  # the fix survives pickling (process pools, distributed workers)
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type, args: tuple, state: dict) -> RRSISError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class InputError(RRSISError):
    """A scene, band selection, bbox or expression that cannot be used."""


class RasterError(InputError):
    """A raster that cannot be opened or used (missing, not a raster, no CRS, too few bands)."""


class ExpressionError(InputError):
    """An empty or otherwise unusable referring expression."""


class ScaleError(InputError):
    """A scene too coarse for what an expression asks (the model learned it at a finer GSD)."""


class VocabularyError(ExpressionError):
    """An expression far from anything the model learned, refused by ``--strict-vocabulary``."""


class CheckpointError(RRSISError):
    """A checkpoint directory that is missing, corrupt or does not match its config."""


class OutputError(RRSISError):
    """An output that exists without ``--overwrite`` or cannot be written."""


class DependencyError(RRSISError):
    """A Python package the requested feature needs is not installed."""


class Cancelled(RRSISError):
    """The run was cancelled by the user; nothing was written."""

    exit_code = 130


def cancel_requested(cancel: object) -> bool:
    """Whether ``cancel`` (None, a ``threading.Event``, a ``QgsFeedback`` or a callable) says stop."""
    if cancel is None:
        return False
    if hasattr(cancel, "is_set"):
        return bool(cancel.is_set())
    if hasattr(cancel, "isCanceled"):
        return bool(cancel.isCanceled())
    return bool(cancel())


class WindowReadError(RasterError):
    """Pixels of a scene that could not be read (a damaged or truncated file, a dropped
    connection, a VRT whose source vanished). ``scene`` and ``window`` say where."""

    def __init__(self, message: str, scene: str = "", window: object = None, *, fix: Optional[Fix] = None) -> None:
        super().__init__(message, fix=fix)
        self.scene = scene
        self.window = window


class OutputBusyError(OutputError):
    """Another run is writing the same output file right now."""
