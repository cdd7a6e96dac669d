"""Reads that fail: one clear error naming the scene and the pixel window, retries for remote
rasters, and the ``skip`` policy that turns unreadable blocks into nodata.

GDAL reports a damaged tile (a file cut short, flipped bits in compressed data, a dropped
connection, a VRT source that vanished) as ``RasterioIOError: Read failed`` with the real cause
chained below it; :func:`guarded` turns any of them into :class:`WindowReadError`. Remote
rasters (``/vsicurl/``, ``/vsis3/``, URLs) are retried with exponential backoff first, since a
dropped connection is often transient.
"""

from __future__ import annotations

import time
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, Tuple, TypeVar

from .errors import Fix, WindowReadError
from .options import ReadErrorPolicy, check_value, spec

T = TypeVar("T")

ON_READ_ERROR = tuple(p.value for p in ReadErrorPolicy)
#: extra attempts for a remote read, and the first pause (doubled after each failure)
REMOTE_RETRIES = 3
REMOTE_BACKOFF_S = 0.5


def check_policy(on_read_error: str) -> str:
    """Validate an ``on_read_error`` value ('fail' or 'skip'; :class:`ReadErrorPolicy`)."""
    return check_value(spec("on_read_error"), on_read_error)


def _read_errors() -> Tuple[type, ...]:
    import rasterio.errors

    errors: List[type] = [rasterio.errors.RasterioError, OSError]
    try:  # GDAL errors that escape without a RasterioIOError around them
        from rasterio._err import CPLE_BaseError

        errors.append(CPLE_BaseError)
    except ImportError:  # pragma: no cover - older rasterio
        pass
    return tuple(errors)


def root_cause(exc: BaseException) -> str:
    """GDAL's own words for a failure (rasterio chains them below 'Read failed'), one line."""
    deepest: BaseException = exc
    seen = 0
    while deepest.__cause__ is not None and seen < 8:
        deepest = deepest.__cause__
        seen += 1
    text = " ".join(str(deepest).split()) or type(deepest).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def describe_window(window) -> str:
    """``col C, row R, W x H px`` for a :class:`~rrsis_geo.raster.Window`."""
    return f"col {window.col_off}, row {window.row_off}, {window.width} x {window.height} px"


def guarded(
    action: Callable[[], T],
    *,
    scene: str,
    window,
    remote: bool = False,
    what: str = "read",
    recover: Optional[Callable[[], None]] = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run the read ``action``; a GDAL failure becomes :class:`WindowReadError` naming ``scene``
    and ``window``. Remote scenes are retried :data:`REMOTE_RETRIES` times with backoff,
    calling ``recover`` (reopen the dataset) before each retry."""
    errors = _read_errors()
    attempts = 1 + (REMOTE_RETRIES if remote else 0)
    for attempt in range(attempts):
        try:
            return action()
        except errors as exc:
            if attempt + 1 < attempts:
                sleep(REMOTE_BACKOFF_S * 2**attempt)
                if recover is not None:
                    try:
                        recover()
                    except errors:  # still down: the next attempt says so
                        pass
                continue
            tried = f" after {attempts} attempts" if attempts > 1 else ""
            cause = root_cause(exc)
            if remote:
                hint = "the connection failed"
            elif "No such file" in cause:  # a VRT (or other index) whose source is gone
                hint = "a file it refers to is missing"
            else:
                hint = "the file is damaged or cut short"
            where = f" at pixel window {describe_window(window)}" if window is not None else ""
            raise WindowReadError(
                f"cannot {what} {scene}{where}{tried}: {cause} ({hint})",
                scene=scene,
                window=window,
                fix=Fix("on_read_error", "skip", effect="to treat unreadable windows as nodata"),
            ) from exc
    raise AssertionError("unreachable")  # pragma: no cover


def block_windows(window, block: Tuple[int, int], width: int, height: int) -> Iterator[Tuple[object, object]]:
    """The scene's blocks (``block`` = rows, cols) meeting ``window``: pairs of (the whole block
    clipped to the scene, its part inside ``window``), row by row."""
    from .raster import Window

    bh, bw = max(1, block[0]), max(1, block[1])
    r_end, c_end = window.row_off + window.height, window.col_off + window.width
    for r in range((window.row_off // bh) * bh, r_end, bh):
        for c in range((window.col_off // bw) * bw, c_end, bw):
            whole = Window(c, r, min(bw, width - c), min(bh, height - r))
            r0, c0 = max(r, window.row_off), max(c, window.col_off)
            r1, c1 = min(r + bh, r_end), min(c + bw, c_end)
            yield whole, Window(c0, r0, c1 - c0, r1 - r0)


def format_windows(windows: Iterable[Tuple[str, object]], limit: int = 12) -> str:
    """``scene: col C, row R, W x H px; ...`` (the first ``limit``, then a count)."""
    items = list(windows)
    text = "; ".join(f"{scene}: {describe_window(w)}" for scene, w in items[:limit])
    if len(items) > limit:
        text += f"; and {len(items) - limit} more"
    return text


def sorted_windows(windows: Sequence) -> List:
    """Unique windows, top to bottom, left to right."""
    return sorted(set(windows), key=lambda w: (w.row_off, w.col_off, w.height, w.width))


__all__ = [
    "ON_READ_ERROR",
    "REMOTE_RETRIES",
    "block_windows",
    "check_policy",
    "describe_window",
    "format_windows",
    "guarded",
    "root_cause",
    "sorted_windows",
]
