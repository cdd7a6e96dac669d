"""Read the refcoco-style ``refs(unc).p`` pickle without letting it run code.

A pickle is a small program: besides building lists and dicts it can import any callable and
call it (that is how ``__reduce__`` works). The refs file only needs plain data, so this
unpickler refuses every global lookup except the two harmless constructors older pickle
protocols use for plain data (``set``/``frozenset``) and the latin-1 ``bytes`` rebuild of
protocol 2. A crafted file therefore fails with :class:`UnsafePickleError` before anything it
names is even imported, let alone called.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any, Callable, Dict, Tuple, Union

from rrsis_geo.errors import InputError

PathLike = Union[str, "os.PathLike[str]"]


class UnsafePickleError(InputError):
    """A pickle that asks for more than plain data."""


def _bytes_from_latin1(text: str, encoding: str = "latin1") -> bytes:
    # protocol 2 stores bytes as codecs.encode(str, "latin1"); accept exactly that and nothing else
    if encoding.replace("-", "").replace("_", "").lower() not in ("latin1", "iso88591"):
        raise UnsafePickleError(f"pickle asks to encode text as {encoding!r}; only latin-1 byte strings are plain data")
    if not isinstance(text, str):
        raise UnsafePickleError("pickle passes a non-string to the bytes constructor")
    return text.encode("latin1")


_ALLOWED: Dict[Tuple[str, str], Callable[..., Any]] = {
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "set"): set,  # Python 2 pickles
    ("__builtin__", "frozenset"): frozenset,
    ("_codecs", "encode"): _bytes_from_latin1,
    ("codecs", "encode"): _bytes_from_latin1,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler for plain containers, numbers, strings, bytes, None and booleans only."""

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102 - see class docstring
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"the pickle refers to {module}.{name}, i.e. it would run code; refusing it. "
                "A refs file holds plain data only: get the dataset from its original source"
            ) from None

    def persistent_load(self, pid: Any) -> Any:  # noqa: D102
        raise UnsafePickleError("the pickle uses persistent ids; a refs file holds plain data only")


def safe_loads(data: bytes) -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler` (Python 2 strings decoded as UTF-8)."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="utf-8", errors="replace").load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # pickle raises many types for truncated or corrupt input
        raise InputError(f"not a readable pickle ({type(exc).__name__}: {exc})") from exc


def safe_load(path: PathLike) -> Any:
    """Unpickle the file at ``path`` with :class:`RestrictedUnpickler`."""
    file = Path(path)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {file}: {exc}") from exc
    try:
        return safe_loads(data)
    except InputError as exc:
        raise type(exc)(f"{file}: {exc}") from exc
