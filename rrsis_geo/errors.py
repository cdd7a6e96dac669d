"""Errors a user can cause.

Every error raised for bad input is an :class:`RRSISError`; its message says what went wrong
*and what to do about it*. The command line prints the message without a traceback and exits
with status 2; the QGIS plugin shows it in the message bar.
"""

from __future__ import annotations


class RRSISError(Exception):
    """Base class of all user-facing errors. Its text is always one line (GDAL's own messages,
    quoted in ours, may hold line breaks), so that the CLI, the Processing log and the plugin's
    worker can pass it on as is."""

    exit_code = 2

    def __str__(self) -> str:
        return " ".join(super().__str__().split())


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

    def __init__(self, message: str, scene: str = "", window: object = None) -> None:
        super().__init__(message)
        self.scene = scene
        self.window = window


class OutputBusyError(OutputError):
    """Another run is writing the same output file right now."""
