"""The worker protocol: JSON lines between the plugin (in QGIS) and the worker process.

Pure standard library: both sides import this module, and the QGIS side must never load torch,
GDAL or GEOS bindings of its own (see ``rrsis_qgis/README.md``, "The worker protocol").

Every message is one JSON object on one line with a ``type`` field. A reader ignores fields it
does not know and messages of a type it does not know, so either side can grow without breaking
the other; :data:`PROTOCOL_VERSION` changes only when a message changes meaning.

Version 1: one request per worker process; the worker exits after answering it. Version 2 (a
*session*): the worker answers requests one after another, each carrying an ``id`` that every
message about it repeats, keeps its model loaded between them, stops a run on a ``cancel``
message without exiting, and exits on ``shutdown`` or when its stdin closes. The plugin speaks
both: a request of protocol 1 gets the version-1 behaviour from any worker, and a worker whose
hello says 1 is driven one request per process.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional

PROTOCOL_VERSION = 2
#: the version of a one-request-per-process exchange (what every worker understands)
ONE_SHOT = 1
#: the versions this plugin can drive
SUPPORTED = (ONE_SHOT, PROTOCOL_VERSION)

# worker -> plugin
HELLO = "hello"  # first line of every worker: versions, interpreter, devices
PLAN = "plan"  # what the run is about to do (free text + optional fields)
PROGRESS = "progress"  # done, total, message
WARNING = "warning"  # free text + optional fields; the run goes on
RESULT = "result"  # the GeoPackage written, its layers and counts; last line of a good run
ERROR = "error"  # one-line text + kind; last line of a failed or cancelled run
KNOWLEDGE = "knowledge"  # answer to explain: the model's categories, phrasings and scales
EXPLANATION = "explanation"  # answer to explain: how the model reads one expression, its scale
CANCELLING = "cancelling"  # version 2: a cancel arrived; repeated every few seconds until the run ends
# plugin -> worker
RUN = "run"  # the job: scene, expressions, options
EXPLAIN = "explain"  # expressions + checkpoint: what the model understands (no scene, no tile)
CANCEL = "cancel"  # version 2: stop the request ``id`` (the worker answers its error "cancelled")
SHUTDOWN = "shutdown"  # version 2: answer nothing more and exit
#: the requests a worker answers with a ``result`` or an ``error``
REQUESTS = (RUN, EXPLAIN)

#: ``error`` kinds. ``input``: the user can fix it (the library's own message); ``cancelled``;
#: ``dependency``: a package is missing in the worker's Python; ``protocol``: the two sides do
#: not understand each other; ``internal``: a bug (``detail`` holds the traceback).
ERROR_KINDS = ("input", "cancelled", "dependency", "protocol", "internal")


class ProtocolError(ValueError):
    """A line that is not a protocol message."""


def message(msg_type: str, **fields: Any) -> Dict[str, Any]:
    """A message dict of type ``msg_type``; ``None`` fields are left out."""
    out: Dict[str, Any] = {"type": msg_type}
    out.update({k: v for k, v in fields.items() if v is not None})
    return out


def encode(msg: Dict[str, Any]) -> str:
    """One line (with its newline) for ``msg``; non-JSON values (paths...) become strings."""
    if not isinstance(msg.get("type"), str):
        raise ProtocolError(f"a message needs a string 'type': {msg!r}")
    return json.dumps(msg, default=str, ensure_ascii=False, separators=(",", ":")) + "\n"


def decode(line: str) -> Dict[str, Any]:
    """The message on ``line``; :class:`ProtocolError` when it is not one."""
    try:
        msg = json.loads(line)
    except ValueError as exc:
        raise ProtocolError(f"not a JSON line: {line[:200]!r}") from exc
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ProtocolError(f"not a protocol message: {line[:200]!r}")
    return msg


def one_line(text: Any, limit: int = 500) -> str:
    """``text`` squeezed onto one line (messages for the dock and the message bar)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def check_hello(msg: Dict[str, Any]) -> Optional[str]:
    """Why the plugin cannot talk to the worker that sent ``msg`` (None: it can)."""
    if msg.get("type") != HELLO:
        return f"the worker did not introduce itself (first message: {msg.get('type')!r})"
    version = msg.get("protocol")
    if version not in SUPPORTED:
        return (
            f"the worker speaks protocol {version!r}, the plugin {' or '.join(map(str, SUPPORTED))}: the rrsis "
            "library the worker runs does not match the plugin; reinstall the plugin"
        )
    return None


def speaks_sessions(hello: Dict[str, Any]) -> bool:
    """The worker that sent ``hello`` answers several requests (protocol 2 or later)."""
    version = hello.get("protocol")
    return isinstance(version, int) and version >= PROTOCOL_VERSION
