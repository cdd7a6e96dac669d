"""Errors a user can cause.

Every error raised for bad input is an :class:`RRSISError`; its message says what went wrong
*and what to do about it*. The command line prints the message without a traceback and exits
with status 2; the QGIS plugin shows it in the message bar.
"""

from __future__ import annotations


class RRSISError(Exception):
    """Base class of all user-facing errors."""

    exit_code = 2


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
