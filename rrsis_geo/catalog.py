"""Where checkpoints are found, and how a published one is fetched (explicitly, never implicitly).

Search order for the default model (``checkpoint=None``):

1. ``$RRSIS_CHECKPOINT`` (a checkpoint directory);
2. ``<repository>/resources/models/default`` next to the installed package (a source checkout or
   an editable install);
3. ``<user model dir>/default``.

The user model dir is ``$RRSIS_MODEL_DIR``, else ``%LOCALAPPDATA%\\rrsis\\models`` on Windows,
else ``$XDG_DATA_HOME/rrsis/models`` (``~/.local/share/rrsis/models``). ``--checkpoint NAME``
with a bare name looks there too.

Published checkpoints are listed in a manifest (name, url, sha256, description): the built-in
:data:`MANIFEST` plus the entries of the JSON file named by ``$RRSIS_MANIFEST``
(``{"models": [{...}, ...]}``). :func:`download_checkpoint` fetches an archive (.zip or .tar.gz,
over https or from a ``file://`` URL), checks its sha256 before unpacking anything, unpacks it
safely and moves it into the user model dir. Nothing downloads at prediction time.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Dict, List, Optional, Union

from .errors import CheckpointError, Fix, InputError, OutputError

PathLike = Union[str, "os.PathLike[str]"]

#: Published checkpoints. Empty until the default model is released: the default model issue
#: adds its entry here (name, url, sha256, description).
MANIFEST: List[Dict[str, str]] = []


def repository_root() -> Path:
    """The directory above the installed ``rrsis_geo`` package (the repository in a checkout)."""
    return Path(__file__).resolve().parent.parent


def bundled_default_dir() -> Path:
    return repository_root() / "resources" / "models" / "default"


def user_model_dir() -> Path:
    """Where downloaded and user-installed checkpoints live."""
    env = os.environ.get("RRSIS_MODEL_DIR")
    if env:
        return Path(env).expanduser()
    if os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "rrsis" / "models"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "rrsis" / "models"


def is_checkpoint(path: Path) -> bool:
    return (path / "config.json").is_file()


def default_checkpoint() -> Optional[Path]:
    """The first default checkpoint in the search order, or None."""
    env = os.environ.get("RRSIS_CHECKPOINT")
    if env:
        return Path(env).expanduser()  # named explicitly: report it even if it is broken
    for candidate in (bundled_default_dir(), user_model_dir() / "default"):
        if is_checkpoint(candidate):
            return candidate
    return None


def resolve_checkpoint(checkpoint: Optional[PathLike] = None) -> Path:
    """The checkpoint directory to load: ``checkpoint`` (a directory, or the name of one in the
    user model dir), or the default one. Raises :class:`CheckpointError` when there is none."""
    if checkpoint is None:
        found = default_checkpoint()
        if found is None:
            raise CheckpointError(
                "no model found: set RRSIS_CHECKPOINT, or install one with `rrsis-geo models --download NAME` "
                f"(into {user_model_dir()}; `rrsis-geo models` lists them)",
                fix=Fix("checkpoint", example="DIR", effect="to use a checkpoint folder", alternative=True),
            )
        return found
    path = Path(checkpoint).expanduser()
    if not path.exists() and len(path.parts) == 1:
        named = user_model_dir() / path
        if named.exists():
            return named
    return path


@dataclass
class CheckpointEntry:
    """One line of ``rrsis-geo models``."""

    name: str
    where: str  # "default", "user", "download"
    location: str  # a directory or a URL
    description: str = ""
    default: bool = False
    sha256: str = ""


def _describe(path: Path) -> str:
    from .checkpoint_config import CheckpointConfig

    try:
        config = CheckpointConfig.read(path)
    except CheckpointError as exc:
        return f"unusable: {exc}"
    parts = [config.display_name(path.name), f"architecture {config.architecture}", f"{config.input_size} px"]
    if config.gsd_m:
        parts.append(f"trained at {config.gsd_m:g} m/px")
    return ", ".join(parts)


def manifest() -> List[Dict[str, str]]:
    """Downloadable checkpoints: the built-in list plus ``$RRSIS_MANIFEST``'s."""
    entries = [dict(e) for e in MANIFEST]
    extra = os.environ.get("RRSIS_MANIFEST")
    if extra:
        path = Path(extra).expanduser()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            models = data["models"] if isinstance(data, dict) else data
            for entry in models:
                for key in ("name", "url", "sha256"):
                    if not entry.get(key):
                        raise KeyError(key)
                entries.append({k: str(v) for k, v in entry.items()})
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(
                f"RRSIS_MANIFEST={path} is not a readable manifest ({exc!r}); it must be JSON "
                '{"models": [{"name": ..., "url": ..., "sha256": ...}]}'
            ) from exc
    return entries


def list_checkpoints() -> List[CheckpointEntry]:
    """Installed checkpoints (default first, then the user model dir) and downloadable ones."""
    out: List[CheckpointEntry] = []
    default = default_checkpoint()
    seen = set()
    if default is not None:
        out.append(CheckpointEntry("default", "default", str(default), _describe(default), default=True))
        seen.add(default.resolve())
    user = user_model_dir()
    if user.is_dir():
        for path in sorted(p for p in user.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if path.resolve() in seen or not is_checkpoint(path):
                continue
            out.append(CheckpointEntry(path.name, "user", str(path), _describe(path)))
    installed = {e.name for e in out if e.where == "user"}
    for entry in manifest():
        where = "installed" if entry["name"] in installed else "download"
        out.append(CheckpointEntry(entry["name"], where, entry["url"], entry.get("description", ""), sha256=entry["sha256"]))
    return out


def _fetch(url: str, dest: Path, progress: Optional[Callable[[int, int, str], None]]) -> str:
    """Stream ``url`` into ``dest``; return its sha256."""
    import urllib.error
    import urllib.request

    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            while True:
                block = response.read(1 << 20)
                if not block:
                    break
                out.write(block)
                digest.update(block)
                done += len(block)
                if progress is not None:
                    progress(done, total, "downloading")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise CheckpointError(f"cannot download {url} ({exc}); check the network or the manifest URL") from exc
    return digest.hexdigest()


def _safe_member(name: str) -> bool:
    p = PurePosixPath(name.replace("\\", "/"))
    return not p.is_absolute() and ".." not in p.parts


def _unpack(archive: Path, url: str, dest: Path) -> None:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if not _safe_member(info.filename):
                    raise CheckpointError(f"{url} holds an unsafe path {info.filename!r}; refusing to unpack it")
            zf.extractall(dest)
        return
    try:
        with tarfile.open(archive, "r:*") as tf:
            for member in tf.getmembers():
                if not _safe_member(member.name) or not (member.isfile() or member.isdir()):
                    raise CheckpointError(f"{url} holds an unsafe entry {member.name!r}; refusing to unpack it")
            # the 'data' filter (Python >= 3.11.4) re-checks paths and drops odd permissions
            tf.extractall(dest, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    except tarfile.TarError as exc:
        raise CheckpointError(f"{url} is neither a zip nor a tar archive ({exc})") from exc


def _checkpoint_root(tree: Path) -> Path:
    if is_checkpoint(tree):
        return tree
    children = [p for p in tree.iterdir() if not p.name.startswith(".")]
    if len(children) == 1 and children[0].is_dir() and is_checkpoint(children[0]):
        return children[0]
    raise CheckpointError("the downloaded archive holds no checkpoint (no config.json at its top)")


def download_checkpoint(
    name: str,
    *,
    overwrite: bool = False,
    progress: Optional[Callable[[int, int, str], None]] = None,
) -> Path:
    """Fetch the manifest entry ``name`` into the user model dir, verifying its sha256."""
    from .models.config_file import read_config

    entries = {e["name"]: e for e in manifest()}
    if name not in entries:
        known = ", ".join(sorted(entries)) or "none (set RRSIS_MANIFEST to a manifest file)"
        raise InputError(f"no downloadable checkpoint named {name!r}; available: {known}")
    entry = entries[name]
    if not _safe_member(name) or "/" in name:
        raise CheckpointError(f"manifest entry name {name!r} is not a plain directory name")
    root = user_model_dir()
    target = root / name
    if target.exists() and not overwrite:
        raise OutputError(f"{target} already exists; pass --overwrite to download it again")
    created = not root.exists()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the model directory {root} ({exc}); set RRSIS_MODEL_DIR") from exc
    # unpacked beside the target so that the final move is a rename on one file system
    work = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".download", dir=root))
    installed = False
    try:
        archive = work / "archive"
        actual = _fetch(entry["url"], archive, progress)
        if actual != entry["sha256"].lower():
            raise CheckpointError(
                f"{entry['url']} has sha256 {actual} but the manifest says {entry['sha256']}; "
                "the download is corrupt or was tampered with; nothing was installed"
            )
        tree = work / "tree"
        tree.mkdir()
        _unpack(archive, entry["url"], tree)
        found = _checkpoint_root(tree)
        read_config(found)
        if target.exists():
            old = work / "old"
            os.replace(target, old)
        os.replace(found, target)
        installed = True
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if created and not installed:
            shutil.rmtree(root, ignore_errors=True)  # it is empty: we made it for this download
    return target
