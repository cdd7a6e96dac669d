"""Extensions: modules named in ``$RRSIS_EXTENSIONS`` (comma-separated) that register model
architectures with :func:`rrsis_geo.models.register_model`; imported by the processes that run
models for others (the plugin's worker, batch workers), since a checkpoint config never names a
module itself."""

from __future__ import annotations

import importlib
import os

EXTENSIONS_ENV = "RRSIS_EXTENSIONS"


def import_extensions() -> None:
    """Import every module named in ``$RRSIS_EXTENSIONS``."""
    for name in filter(None, (part.strip() for part in os.environ.get(EXTENSIONS_ENV, "").split(","))):
        importlib.import_module(name)
