"""Output files that appear complete or not at all.

Every output is written under a hidden temporary name in its destination directory and renamed
onto the destination only when the whole run has succeeded (``os.replace`` is atomic on one
file system). A failed or cancelled run removes its temporary files and never touches an
existing destination.

While a run holds a destination it holds an advisory lock on it (``flock`` on a hidden
``.NAME.lock`` file beside it, released by the kernel if the process dies), so a second run
aimed at the same file fails at once with :class:`OutputBusyError` instead of racing the first.
A failed write is reported by :func:`write_failure` as one line naming the file and the cause
(no space left, read-only file system, permission denied, directory removed).
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

from .errors import Fix, OutputBusyError, OutputError, RRSISError

PathLike = Union[str, "os.PathLike[str]"]


def check_output_target(path: PathLike, *, overwrite: bool = False, what: str = "output") -> Path:
    """Validate that ``path`` may be written: it does not exist (or ``overwrite``) and its
    directory exists and accepts new files. Returns the path (absolute)."""
    target = Path(path).expanduser().absolute()
    if target.is_dir():
        raise OutputError(f"{what} {target} is a directory; give a file name")
    if target.exists() and not overwrite:
        raise OutputError(f"{what} {target} already exists", fix=Fix("overwrite", effect="to replace it"))
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


def _remove_with_sidecars(path: Path) -> List[Path]:
    """Remove ``path`` and GDAL's sidecars; return those that could not be removed."""
    left = []
    for candidate in (path, Path(f"{path}-journal"), Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}.aux.xml")):
        try:
            candidate.unlink()
        except FileNotFoundError:
            pass
        except OSError:  # a file system turned read-only, say: reported, not raised over the cause
            if os.path.lexists(candidate):
                left.append(candidate)
    return left


_ADVICE = {
    errno.ENOSPC: "free some space or write elsewhere",
    errno.EDQUOT: "free some space or write elsewhere",
    errno.EROFS: "write elsewhere",
    errno.EACCES: "check the directory's permissions",
    errno.EPERM: "check the directory's permissions",
    errno.ENOENT: "it was removed during the run; create it again and rerun",
}


def _probe_write(directory: Path) -> Optional[OSError]:
    """Try to create and fill a small file in ``directory``; the OSError that stops it, if any."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".rrsis.", suffix=".probe", dir=directory)
    except OSError as exc:
        return exc
    try:
        os.write(fd, b"\0" * 65536)
        os.fsync(fd)
    except OSError as exc:
        return exc
    finally:
        os.close(fd)
        try:
            os.unlink(probe)
        except OSError:
            pass
    return None


def write_failure(path: PathLike, exc: BaseException, *, what: str = "") -> OutputError:
    """An :class:`OutputError` naming ``path`` and why writing it failed.

    GDAL reports most write failures as a bare 'Write failed', so the cause is found by asking
    the file system: the errno of ``exc`` when it has one, else a probe write beside the file.
    """
    target = Path(path)
    code = exc.errno if isinstance(exc, OSError) and exc.errno in _ADVICE else None
    reason = os.strerror(code) if code else ""
    if code in (None, errno.ENOENT) and not target.parent.is_dir():
        # one wording whichever call noticed first (GDAL's bare failure or an OSError's ENOENT)
        code, reason = errno.ENOENT, f"the directory {target.parent} no longer exists"
    elif code is None:
        probe = _probe_write(target.parent)
        if probe is not None and probe.errno is not None:
            code, reason = probe.errno, os.strerror(probe.errno)
    if not reason:
        from .read_faults import root_cause

        reason = root_cause(exc)
    advice = _ADVICE.get(code or 0, "check free space and permissions")
    label = f"{what} " if what else ""
    return OutputError(f"cannot write {label}{target}: {reason}; {advice}")


def check_free_space(needs: Sequence[Tuple[PathLike, int]]) -> None:
    """Refuse to start when the files in ``needs`` (path, bytes at most) cannot fit: the bytes
    are summed per file system and compared with its free space."""
    per_device: Dict[int, Tuple[Path, int, List[Path]]] = {}
    for path, nbytes in needs:
        directory = Path(path).parent
        device = os.stat(directory).st_dev
        first, total, paths = per_device.get(device, (directory, 0, []))
        per_device[device] = (first, total + int(nbytes), paths + [Path(path)])
    for directory, total, paths in per_device.values():
        free = shutil.disk_usage(directory).free
        if total > free:
            names = ", ".join(str(p) for p in paths)
            raise OutputError(
                f"not enough free space for {names}: up to {_mb(total)} needed (uncompressed size), "
                f"{_mb(free)} free in {directory}; free some space or write elsewhere"
            )


def _mb(nbytes: int) -> str:
    return f"{nbytes / 2**20:.1f} MiB"


class OutputLock:
    """An exclusive, non-blocking advisory lock on one destination file (see module docstring)."""

    def __init__(self, target: Path, what: str = "output") -> None:
        self.target = target
        self.path = target.with_name(f".{target.name}.lock")
        self.what = what
        self._fd: Optional[int] = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`OutputBusyError` at once."""
        while True:
            fd = os.open(self.path, os.O_RDONLY | os.O_CREAT, 0o644)  # read-only: flock needs no more
            if not _try_lock(fd):
                os.close(fd)
                raise OutputBusyError(
                    f"another run is writing {self.what} {self.target} right now; wait for it to finish "
                    "or choose another output file"
                )
            # the holder before us may have removed the file after we opened it: lock the one
            # that is at the path now, or we would hold a lock nobody else can see
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                return
            os.close(fd)

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.unlink(self.path)  # while still locked, so no one can lock the dying file
        except OSError:
            pass
        os.close(self._fd)  # releases the lock
        self._fd = None


def _try_lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


class OutputTransaction:
    """A set of output files committed together.

    ``add(target)`` validates the destination and returns the temporary path to write to;
    :meth:`commit` renames every temporary file onto its destination; :meth:`discard` (also
    called when the ``with`` block raises, KeyboardInterrupt included) removes them all.
    """

    def __init__(self, *, overwrite: bool = False) -> None:
        self.overwrite = overwrite
        self._temps: Dict[Path, Path] = {}
        self._locks: List[OutputLock] = []
        self._done = False

    def add(self, target: PathLike, *, what: str = "output") -> Path:
        path = check_output_target(target, overwrite=self.overwrite, what=what)
        if path in self._temps:
            raise OutputError(f"{path} is named twice as an output; give each output its own file name")
        lock = OutputLock(path, what)
        try:
            lock.acquire()
        except OSError as exc:
            raise write_failure(lock.path, exc, what="the lock file") from exc
        self._locks.append(lock)
        # checked again under the lock: a run that held it may have just written the file
        check_output_target(path, overwrite=self.overwrite, what=what)
        try:  # the directory may have stopped accepting files since the checks
            temp = temp_path_beside(path)
        except OSError as exc:
            raise write_failure(path, exc) from exc
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
                raise OutputError(f"{target} appeared while the run was going", fix=Fix("overwrite", effect="to replace it"))
        for target, temp in self._temps.items():
            try:
                os.replace(temp, target)
            except OSError as exc:
                raise write_failure(target, exc) from exc
            for sidecar in (Path(f"{temp}-journal"), Path(f"{temp}-wal"), Path(f"{temp}-shm")):
                if sidecar.exists():
                    sidecar.unlink()
        self._done = True
        self._release()

    def discard(self) -> List[Path]:
        """Remove every temporary file; destinations are left as they were. Returns the files
        that could not be removed (on a file system that turned read-only, say)."""
        left: List[Path] = []
        for temp in self._temps.values():
            left += _remove_with_sidecars(temp)
        self._done = True
        self._release()
        return left

    def _release(self) -> None:
        for lock in self._locks:
            lock.release()
        self._locks = []

    def __enter__(self) -> "OutputTransaction":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None and self._done:
            return
        left = self.discard()
        if isinstance(exc, RRSISError) and exc.args:
            # the user named the destinations, not our temporary files
            message = str(exc.args[0])
            for target, temp in self._temps.items():
                message = message.replace(str(temp), str(target))
            if left:
                message += f" (could not remove {', '.join(map(str, left))})"
            exc.args = (message, *exc.args[1:])


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
