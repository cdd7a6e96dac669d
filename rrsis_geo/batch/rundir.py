"""The run directory of a batch run: what was asked, and each scene's state, on disk.

::

    RUN_DIR/run.json              the run's fingerprint: expressions, options, model (files' sizes + hashes)
    RUN_DIR/scenes/ID.json        per scene: done (its part and checksum), failed (one-line error)
    RUN_DIR/parts/ID.gpkg         per scene: its polygons, one layer per expression (written by a worker)
    RUN_DIR/summary.json          the last run's summary
    RUN_DIR/superseded/…          an earlier run's files, moved aside when the options or model changed

Every file is written to a temporary name and renamed: a run killed at any moment leaves each
file whole or absent. A scene without a state file is pending; re-running the same command runs
the pending and failed scenes and keeps the done ones (whose part is still there, checksum equal).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Sequence

from ..io_utils import temp_path_beside

DONE, FAILED, PENDING = "done", "failed", "pending"


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_path_beside(path)
    with open(temp, "w", encoding="utf-8") as out:
        json.dump(data, out, indent=1, sort_keys=True, default=str)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temp, path)


def file_checksum(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


#: checkpoint files that do not change predictions (the "understood as" cache)
NOT_FINGERPRINTED = ("phrasings.safetensors", "README.md")


def checkpoint_fingerprint(directory: Path) -> Dict[str, str]:
    """Name -> sha256 of each file of the checkpoint that makes its predictions (config,
    weights, tokenizer files)."""
    return {p.name: file_checksum(p) for p in sorted(directory.iterdir())
            if p.is_file() and not p.name.startswith(".") and p.name not in NOT_FINGERPRINTED}


class RunDir:
    """A batch run's directory (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().absolute()
        self.parts = self.root / "parts"
        self.states = self.root / "scenes"
        self._verified: set = set()  # done scenes whose part's checksum this process has checked

    def part(self, scene_id: str) -> Path:
        return self.parts / f"{scene_id}.gpkg"

    def _state_path(self, scene_id: str) -> Path:
        return self.states / f"{scene_id}.json"

    # ---- the run's identity --------------------------------------------------------------
    def open(self, fingerprint: Dict[str, Any]) -> Optional[str]:
        """Start or resume the run for ``fingerprint``; a message when an earlier run with other
        options or another model was moved aside (None: new, or resumed)."""
        self.root.mkdir(parents=True, exist_ok=True)
        run_file = self.root / "run.json"
        note = None
        if run_file.is_file():
            try:
                previous = json.loads(run_file.read_text(encoding="utf-8"))
            except ValueError:
                previous = None
            if previous == fingerprint:
                return None
            note = self._supersede(previous, fingerprint)
        elif self.states.exists() or self.parts.exists():  # states of an unknown run: never resumed
            note = self._supersede(None, fingerprint)
        self.parts.mkdir(exist_ok=True)
        self.states.mkdir(exist_ok=True)
        write_json(run_file, fingerprint)
        return note

    def _supersede(self, previous: Optional[Dict[str, Any]], current: Dict[str, Any]) -> str:
        self._verified.clear()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = self.root / "superseded" / stamp
        aside.mkdir(parents=True, exist_ok=True)
        # run.json last: interrupted half-way, what is left still has no fingerprint and is set
        # aside again by the next run, never resumed under the new one
        for name in ("parts", "scenes", "summary.json", "run.json"):
            if (self.root / name).exists():
                shutil.move(str(self.root / name), str(aside / name))
        if isinstance(previous, dict):
            changed = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
            what = "the " + ", ".join(changed)
        else:
            what = "the states of an unknown run (no readable run.json)"
        return f"{what} differ from the earlier run in {self.root}: starting a new run (its files are in {aside})"

    # ---- scenes ----------------------------------------------------------------------------
    def state(self, scene_id: str) -> Dict[str, Any]:
        """The scene's state: ``{"state": done|failed|pending, ...}``; a done scene whose part is
        gone or changed counts as pending."""
        path = self._state_path(scene_id)
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {"state": PENDING}
        if state.get("state") == DONE and scene_id not in self._verified:  # each part read once per run
            part = self.part(scene_id)
            if part.is_file() and state.get("checksum") == file_checksum(part):
                self._verified.add(scene_id)
            else:
                part.unlink(missing_ok=True)  # changed since it was recorded: never merged, run again
                path.unlink(missing_ok=True)
                return {"state": PENDING, "why": "its part is missing or changed"}
        return state

    def adopt(self, scene_id: str, layers: Sequence[str]) -> bool:
        """A scene with no state whose part is on disk (its worker finished after the driver
        stopped listening: parts are renamed into place whole) is recorded as done, once the
        part opens with every expected layer; True if so."""
        part = self.part(scene_id)
        if self._state_path(scene_id).exists() or not part.is_file():
            return False
        try:
            import pyogrio

            found = {str(name) for name, _ in pyogrio.list_layers(part)}
        except Exception:  # unreadable: run the scene again
            found = set()
        if not set(layers) <= found:
            part.unlink(missing_ok=True)
            return False
        self.record_done(scene_id, {"adopted": True})
        return True

    def owns(self, output: Path) -> bool:
        """``output`` was written by an earlier run of this directory (a resume may replace it)."""
        try:
            summary = json.loads((self.root / "summary.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return str(Path(output).expanduser().absolute()) in (summary.get("written") or [])

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Held for the whole run: a second run on the same directory is refused at once."""
        from ..io_utils import OutputLock

        self.root.mkdir(parents=True, exist_ok=True)
        lock = OutputLock(self.root / "run", "the run directory")
        lock.acquire()
        try:
            yield
        finally:
            lock.release()

    def record_done(self, scene_id: str, result: Dict[str, Any]) -> None:
        part = self.part(scene_id)
        write_json(self._state_path(scene_id), dict(result, state=DONE, part=str(part), checksum=file_checksum(part)))
        self._verified.add(scene_id)

    def record_failed(self, scene_id: str, error: str, kind: str) -> None:
        self._verified.discard(scene_id)
        write_json(self._state_path(scene_id), {"state": FAILED, "error": error, "kind": kind})
