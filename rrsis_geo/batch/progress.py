"""Progress of a batch run: scenes done out of the run's, tiles, rate and ETA (tqdm, on stderr)."""

from __future__ import annotations

import time
from typing import Any, Dict


class BatchProgress:
    """One tqdm bar over the scenes; its postfix counts tiles, tiles/s and failures."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        self.started = time.monotonic()
        self.tiles = 0
        self.failed = 0
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="scene", dynamic_ncols=True, leave=True)

    def update(self, outcome: Dict[str, Any], scene: Any) -> None:
        self.tiles += int(outcome.get("tiles", 0))
        if outcome.get("status") != "done":
            self.failed += 1
        if self.bar is None:
            return
        rate = self.tiles / max(time.monotonic() - self.started, 1e-9)
        self.bar.set_postfix(tiles=self.tiles, tiles_s=f"{rate:.1f}", failed=self.failed, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
