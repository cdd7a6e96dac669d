"""Where finished strips of probabilities go: the interface of the GeoTIFF writers and the
polygoniser, free of torch so that polygonising needs no model stack."""

from __future__ import annotations

import numpy as np


class StripSink:
    """Receives finished rows of the region, top to bottom (see :class:`rrsis_geo.engine.StripWorker`)."""

    def write(self, row0: int, probs: np.ndarray, valid: np.ndarray) -> None:
        """``probs[E, n, W]`` float32 (0 where invalid), ``valid[n, W]`` bool."""
        raise NotImplementedError

    def close(self) -> None:
        """All rows have been written: finish the output."""

    def abort(self) -> None:
        """The run failed or was cancelled: release files (the caller deletes them)."""
