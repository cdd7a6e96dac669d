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


@pytest.mark.parametrize("form", ["/vsicurl/", "URL"])
def test_dropped_connections_are_retried(tmp_path, capsys, scene, checkpoint, quick_backoff, record, form):
    out = tmp_path / "remote.gpkg"
    with FlakyServer(scene, safe_bytes=16384, drops=2) as server:
        url = server.url if form == "/vsicurl/" else server.http_url
        code, _, err = run(["predict", url, "-e", "red", "-o", out, "--checkpoint", checkpoint, "-q"], capsys)
    assert code == 0, err
    assert server.dropped == 2
    local = tmp_path / "local.gpkg"
    assert run(["predict", scene, "-e", "red", "-o", local, "--checkpoint", checkpoint, "-q"], capsys)[0] == 0
    remote_frame, local_frame = pyogrio.read_dataframe(out), pyogrio.read_dataframe(local)
    assert len(remote_frame) == len(local_frame) == 1
    assert remote_frame.geometry.iloc[0].equals(local_frame.geometry.iloc[0])
    record(f"HTTP server drops the connection mid-response twice ({form} form)", code, err or "(no message)",
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


def test_skip_a_connection_that_keeps_dropping(tmp_path, capsys, checkpoint, quick_backoff, record):
    scene = textured_scene(tmp_path / "scene.tif")  # 128 px, 25 kB
    out = tmp_path / "o.gpkg"
    with FlakyServer(scene, safe_bytes=16384, drops=-1) as server:  # the top rows arrive, the rest never
        code, _, err = run(["predict", server.url, "-e", "red", "-o", out, "--checkpoint", checkpoint, "-q",
                            "--on-read-error", "skip"], capsys)
    assert code == 0, err
    listed = pyogrio.read_info(out)["dataset_metadata"]["RRSIS_UNREAD_WINDOWS"]
    assert listed.startswith("scene.tif: col ") and "row 0," not in listed  # the top block row was read
    frame = pyogrio.read_dataframe(out)
    assert len(frame) == 1 and frame.area.iloc[0] == pytest.approx(32 * 32 * 0.25)  # the square is at the top
    record("HTTP server drops every response past byte 16384 of 25 kB, --on-read-error skip", code, err.splitlines()[0][:150] + " ...",
           [f"o.gpkg (1 polygon; {listed.count('px')} blocks listed as unread)"])
