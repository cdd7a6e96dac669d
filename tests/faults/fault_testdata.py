"""Damaged files, full and read-only file systems, a flaky HTTP server: the faults of the suite.

Everything is real: GeoTIFFs written by GDAL and then cut or bit-flipped at known byte offsets
(read back from GDAL's own ``TIFF`` metadata), tmpfs mounts, a loopback-only HTTP server.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "geo"))

from geo_testdata import red_square_scene, write_geotiff  # noqa: E402

SIZE = 128  # scene edge (px); blocks are 16 x 16, so 64 blocks
BLOCK = 16


def textured_scene(path: Path, size: int = SIZE) -> Path:
    """A tiled (16 px), DEFLATE GeoTIFF: noise (so every block has its own compressed bytes)
    over a dark scene with a red square in the top-left quarter."""
    data = red_square_scene(size, size, slice(8, 40), slice(8, 40))
    noise = np.random.default_rng(7).integers(0, 12, data.shape, dtype=np.uint8)
    return write_geotiff(path, (data - noise * (data > 100) + noise * (data <= 100)).astype(np.uint8))


def block_ranges(path: Path) -> Dict[Tuple[int, int], Tuple[int, int]]:
    """(block row, block col) -> (byte offset, byte count) of each block, as GDAL reports them."""
    import rasterio

    out = {}
    with rasterio.open(path) as ds:
        rows, cols = -(-ds.height // BLOCK), -(-ds.width // BLOCK)
        for r in range(rows):
            for c in range(cols):
                offset = int(ds.get_tag_item(f"BLOCK_OFFSET_{c}_{r}", "TIFF", bidx=1))
                count = int(ds.get_tag_item(f"BLOCK_SIZE_{c}_{r}", "TIFF", bidx=1))
                out[(r, c)] = (offset, count)
    return out


def truncate_copy(source: Path, target: Path, length: int) -> Path:
    target.write_bytes(source.read_bytes()[:length])
    return target


def flip_bits(source: Path, target: Path, offsets: List[int]) -> Path:
    raw = bytearray(source.read_bytes())
    for offset in offsets:
        raw[offset] ^= 0xFF
    target.write_bytes(bytes(raw))
    return target


def listing(directory: Path) -> List[str]:
    """Every file under ``directory`` (relative names, sorted): what a fault left on disk."""
    return sorted(str(p.relative_to(directory)) for p in Path(directory).rglob("*"))


# ---- file systems ------------------------------------------------------------------------------
def can_mount() -> Optional[str]:
    """None when tmpfs can be mounted here, else the reason why not (for pytest.skip)."""
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    return None


@contextlib.contextmanager
def tmpfs(mountpoint: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (e.g. '2m') mounted at ``mountpoint`` for the block."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mountpoint)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        import pytest

        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def remount(mountpoint: Path, mode: str) -> None:
    """Remount a tmpfs read-only ('ro') or read-write ('rw')."""
    subprocess.run(["mount", "-o", f"remount,{mode}", str(mountpoint)], check=True, capture_output=True)


def fill(directory: Path) -> Path:
    """Fill the file system of ``directory`` to the last byte; return the filler file."""
    filler = directory / "filler.bin"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for size in (1 << 20, 65536, 4096, 512, 1):  # unbuffered, ever smaller, to the last byte
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


# ---- a flaky HTTP server on the loopback interface --------------------------------------------
class FlakyServer:
    """Serves one file over HTTP on 127.0.0.1 with Range support; the first ``drops`` GET
    requests that reach past ``safe_bytes`` send half their body and then cut the connection
    (``drops=-1``: every such request)."""

    def __init__(self, path: Path, *, safe_bytes: int, drops: int) -> None:
        self.data = path.read_bytes()
        self.name = path.name
        self.safe_bytes = safe_bytes
        self.drops = drops
        self.dropped = 0
        self.requests = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def setup(self) -> None:
                super().setup()
                # headers and body go out in separate writes: without this, Nagle's algorithm
                # and delayed ACKs add 40 ms to every response on the loopback interface
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _range(self) -> Tuple[int, int]:
                header = self.headers.get("Range", "")
                if header.startswith("bytes="):
                    first, _, last = header[6:].partition("-")
                    return int(first), min(int(last) if last else len(server.data) - 1, len(server.data) - 1)
                return 0, len(server.data) - 1

            def _head(self, status: int, first: int, last: int) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "image/tiff")
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(last - first + 1))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {first}-{last}/{len(server.data)}")
                self.end_headers()

            def do_HEAD(self) -> None:
                if self.path != f"/{server.name}":
                    self.send_error(404)
                    return
                self._head(200, 0, len(server.data) - 1)

            def do_GET(self) -> None:
                server.requests += 1
                if self.path != f"/{server.name}":
                    self.send_error(404)
                    return
                first, last = self._range()
                self._head(206 if "Range" in self.headers else 200, first, last)
                body = server.data[first : last + 1]
                if last >= server.safe_bytes and (server.drops < 0 or server.dropped < server.drops):
                    server.dropped += 1
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def http_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/{self.name}"

    @property
    def url(self) -> str:
        return f"/vsicurl/{self.http_url}"

    def __enter__(self) -> "FlakyServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def run(argv, capsys):
    """``rrsis-geo ARGV`` in this process: (exit status, stdout, stderr)."""
    from rrsis_geo.cli import main

    code = main([str(a) for a in argv])
    return (code, *capsys.readouterr())


def assert_one_line(code, err, *needles):
    """Exit status 2 and one ``rrsis-geo: error:`` line holding every needle."""
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("rrsis-geo: error: "), err
    for needle in needles:
        assert needle in err, err
