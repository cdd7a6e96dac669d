"""A remote raster behind a local HTTP server (127.0.0.1 only) that drops the connection in the
middle of a response: retried with backoff on a fresh handle; when it keeps dropping, one line
naming the URL and the pixel window, exit 2, nothing written."""

from __future__ import annotations

import pyogrio
import pytest

import rrsis_geo.read_faults as read_faults
from fault_testdata import FlakyServer, listing, textured_scene
from rrsis_geo.cli import main


@pytest.fixture()
def quick_backoff(monkeypatch):
    monkeypatch.setattr(read_faults, "REMOTE_BACKOFF_S", 0.01)
    monkeypatch.setenv("GDAL_DISABLE_READDIR_ON_OPEN", "EMPTY_DIR")  # no directory listing requests


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return textured_scene(tmp_path_factory.mktemp("remote") / "scene.tif", 256)  # ~100 kB: several range requests


def run(argv, capsys):
    code = main([str(a) for a in argv])
    return (code, *capsys.readouterr())


def test_dropped_connections_are_retried(tmp_path, capsys, scene, checkpoint, quick_backoff, record):
    out = tmp_path / "remote.gpkg"
    with FlakyServer(scene, safe_bytes=16384, drops=2) as server:
        code, _, err = run(["predict", server.url, "-e", "red", "-o", out, "--checkpoint", checkpoint, "-q"], capsys)
    assert code == 0, err
    assert server.dropped == 2
    local = tmp_path / "local.gpkg"
    assert run(["predict", scene, "-e", "red", "-o", local, "--checkpoint", checkpoint, "-q"], capsys)[0] == 0
    remote_frame, local_frame = pyogrio.read_dataframe(out), pyogrio.read_dataframe(local)
    assert len(remote_frame) == len(local_frame) == 1
    assert remote_frame.geometry.iloc[0].equals(local_frame.geometry.iloc[0])
    record("HTTP server drops the connection mid-response twice", code, err or "(no message)",
           ["remote.gpkg, same polygon as from the local file"])


def test_connection_that_keeps_dropping(tmp_path, capsys, scene, checkpoint, quick_backoff, record):
    out = tmp_path / "o.gpkg"
    with FlakyServer(scene, safe_bytes=16384, drops=-1) as server:
        code, _, err = run(["predict", server.url, "-e", "red", "-o", out, "--checkpoint", checkpoint, "-q"], capsys)
    assert code == 2, err
    line = err.strip()
    assert "\n" not in line and line.startswith("rrsis-geo: error: cannot read /vsicurl/http://127.0.0.1:"), err
    assert "at pixel window" in line and f"after {1 + read_faults.REMOTE_RETRIES} attempts" in line
    assert listing(tmp_path) == []
    record("HTTP server drops every response past the header", code, err, "nothing")
