"""Output files that appear complete or not at all.

Every output is written under a hidden temporary name in its destination directory and renamed
onto the destination only when the whole run has succeeded (``os.replace`` is atomic on one
file system). A failed or cancelled run removes its temporary files and never touches an
existing destination.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Union

from .errors import OutputError

PathLike = Union[str, "os.PathLike[str]"]


def check_output_target(path: PathLike, *, overwrite: bool = False, what: str = "output") -> Path:
    """Validate that ``path`` may be written: it does not exist (or ``overwrite``) and its
    directory exists and accepts new files. Returns the path (absolute)."""
    target = Path(path).expanduser().absolute()
    if target.is_dir():
        raise OutputError(f"{what} {target} is a directory; give a file name")
    if target.exists() and not overwrite:
        raise OutputError(f"{what} {target} already exists; pass --overwrite (overwrite=True) to replace it")
    parent = target.parent
    if not parent.exists():
        raise OutputError(f"the directory of {what} {target} does not exist; create {parent} first")
    if not parent.is_dir():
        raise OutputError(f"{what} {target} cannot be written: {parent} is not a directory")
    # A real probe: permission bits say nothing for root or on read-only mounts.
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".probe", dir=parent)
    except OSError as exc:
        raise OutputError(
            f"cannot write {what} into {parent} ({exc.strerror or exc}); choose a writable directory"
        ) from exc
    os.close(fd)
    os.unlink(probe)
    return target


def temp_path_beside(target: Path, suffix: Optional[str] = None) -> Path:
    """A fresh, unused hidden path in ``target``'s directory, keeping its extension."""
    suffix = target.suffix if suffix is None else suffix
    fd, name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".tmp{suffix}", dir=target.parent)
    os.close(fd)
    os.unlink(name)  # GDAL drivers want to create the file themselves
    return Path(name)


def _remove_with_sidecars(path: Path) -> None:
    for candidate in (path, Path(f"{path}-journal"), Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}.aux.xml")):
        try:
            candidate.unlink()
        except FileNotFoundError:
            pass


class OutputTransaction:
    """A set of output files committed together.

    ``add(target)`` validates the destination and returns the temporary path to write to;
    :meth:`commit` renames every temporary file onto its destination; :meth:`discard` (also
    called when the ``with`` block raises, KeyboardInterrupt included) removes them all.
    """

    def __init__(self, *, overwrite: bool = False) -> None:
        self.overwrite = overwrite
        self._temps: Dict[Path, Path] = {}
        self._done = False

    def add(self, target: PathLike, *, what: str = "output") -> Path:
        path = check_output_target(target, overwrite=self.overwrite, what=what)
        if path in self._temps:
            raise OutputError(f"{path} is named twice as an output; give each output its own file name")
        temp = temp_path_beside(path)
        self._temps[path] = temp
        return temp

    def temp(self, target: PathLike) -> Path:
        """The temporary path registered for ``target``."""
        return self._temps[Path(target).expanduser().absolute()]

    @property
    def targets(self) -> List[Path]:
        return list(self._temps)

    def commit(self) -> None:
        """Move every temporary file onto its destination."""
        for target, temp in self._temps.items():
            if not temp.exists():
                raise OutputError(f"internal error: {target} was not written")
            if target.exists() and not self.overwrite:
                raise OutputError(f"{target} appeared while the run was going; pass --overwrite to replace it")
        for target, temp in self._temps.items():
            os.replace(temp, target)
            for sidecar in (Path(f"{temp}-journal"), Path(f"{temp}-wal"), Path(f"{temp}-shm")):
                if sidecar.exists():
                    sidecar.unlink()
        self._done = True

    def discard(self) -> None:
        """Remove every temporary file; destinations are left as they were."""
        for temp in self._temps.values():
            _remove_with_sidecars(temp)
        self._done = True

    def __enter__(self) -> "OutputTransaction":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None or not self._done:
            self.discard()


def replace_dir(source: Path, target: Path) -> None:
    """Move the finished directory ``source`` onto ``target``, replacing any ``target``.

    The old ``target`` is first renamed aside, so that at every moment one complete directory
    is at ``target`` (or the old one beside it, should the process die in between).
    """
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(source, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(source, target)


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows.

    ``os.umask`` can only be read by setting it; for that instant every file another thread
    creates (QGIS runs several) would be world-writable, so Linux's ``/proc`` is asked first.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o077)  # the safe value for the instant it is in force
    os.umask(umask)
    return umask


def publish_modes(directory: Path) -> None:
    """Give ``directory`` and the files in it the modes the umask allows (0755 / 0644 usually).

    :func:`tempfile.mkdtemp` makes private 0700 directories and safetensors writes 0600 files;
    a checkpoint must be readable by whoever may read its parent (a shared model folder, a
    plugin installed for all users).
    """
    umask = current_umask()
    os.chmod(directory, 0o777 & ~umask)
    for child in directory.rglob("*"):
        os.chmod(child, (0o777 if child.is_dir() else 0o666) & ~umask)
