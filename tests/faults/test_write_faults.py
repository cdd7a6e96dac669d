"""Writes that fail: a full file system (tmpfs), a read-only one, a directory removed during the
run, and the free-space check before a large --prob-out. Each: one line naming the file and
the cause, exit 2, no temporary file left, an existing output untouched."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

import rrsis_geo
from fault_testdata import assert_one_line, run, can_mount, fill, listing, remount, textured_scene, tmpfs
from geo_testdata import write_geotiff
from rrsis_geo.errors import OutputError

needs_mount = pytest.mark.skipif(can_mount() is not None, reason=str(can_mount()))


def fail_during_run(action, before_tiles: bool = False):
    """A progress callback that runs ``action`` once, after the first batch of tiles (or, with
    ``before_tiles``, once the run is planned and its outputs reserved, before the first tile)."""
    state = {"done": False}

    def progress(done, total, message):
        due = message == "encoding expressions" if before_tiles else done >= 1
        if due and not state["done"]:
            state["done"] = True
            action()

    return progress


def predict_error(scene, checkpoint, progress, **outputs):
    with pytest.raises(OutputError) as caught:
        rrsis_geo.predict(scene, "red", checkpoint=checkpoint, device="cpu", progress=progress, **outputs)
    return caught.value


@needs_mount
def test_full_file_system_keeps_the_existing_output(tmp_path, capsys, scene, checkpoint, record):
    with tmpfs(tmp_path / "mnt", "4m") as mnt:
        out = mnt / "out.gpkg"
        assert run(["predict", scene, "-e", "red", "-o", out, "--checkpoint", checkpoint, "-q"], capsys)[0] == 0
        before = out.read_bytes()
        fill(mnt)
        code, _, err = run(["predict", scene, "-e", "red", "-o", out, "--checkpoint", checkpoint, "-q", "--overwrite"], capsys)
        assert_one_line(code, err, f"cannot write the GeoPackage {out}: No space left on device")
        assert out.read_bytes() == before
        assert listing(mnt) == ["filler.bin", "out.gpkg"]
        record("GeoPackage on a full tmpfs (--overwrite of an existing one)", code, err, "out.gpkg unchanged, filler.bin")


@needs_mount
def test_disk_fills_up_during_the_run(tmp_path, scene, checkpoint, record):
    with tmpfs(tmp_path / "mnt", "8m") as mnt:
        error = predict_error(scene, checkpoint, fail_during_run(lambda: fill(mnt)), output=mnt / "o.gpkg",
                              prob_out=mnt / "p.tif")
        message = str(error)
        assert "No space left on device" in message and str(mnt / "p.tif") in message and ".tmp" not in message
        assert listing(mnt) == ["filler.bin"]
        record("tmpfs filled while the run goes (--prob-out + GeoPackage)", error.exit_code, message, "filler.bin only")


@needs_mount
def test_free_space_is_checked_before_a_large_prob_out(tmp_path, capsys, checkpoint, record):
    big = write_geotiff(tmp_path / "big.tif", np.full((3, 2048, 2048), 60, np.uint8))  # compresses to ~20 kB
    with tmpfs(tmp_path / "mnt", "2m") as mnt:
        code, _, err = run(["predict", big, "-e", "red", "--prob-out", mnt / "p.tif", "--checkpoint", checkpoint, "-q"], capsys)
        assert_one_line(code, err, f"not enough free space for {mnt / 'p.tif'}: up to 17.2 MiB needed")
        assert listing(mnt) == []
        record("--prob-out of a 2048 x 2048 scene onto a 2 MiB tmpfs", code, err, "nothing")


@needs_mount
def test_read_only_file_system(tmp_path, capsys, scene, checkpoint, record):
    with tmpfs(tmp_path / "mnt", "4m") as mnt:
        remount(mnt, "ro")
        code, _, err = run(["predict", scene, "-e", "red", "-o", mnt / "o.gpkg", "--checkpoint", checkpoint, "-q"], capsys)
        assert_one_line(code, err, f"cannot write output GeoPackage into {mnt} (Read-only file system)")
        assert listing(mnt) == []
        record("output on a read-only tmpfs", code, err, "nothing")

        remount(mnt, "rw")
        # Linux refuses a read-only remount (EBUSY) while a file is open for writing, and the
        # strip writer's thread opens the GeoTIFF at the first finished strip: after the first
        # batch the remount raced that open (CI lost the race), so it happens before the tiles.
        turn_read_only = fail_during_run(lambda: remount(mnt, "ro"), before_tiles=True)
        error = predict_error(scene, checkpoint, turn_read_only, mask_out=mnt / "m.tif")
        assert f"cannot write {mnt / 'm.tif'}: Read-only file system; write elsewhere" == str(error)
        # the lock taken before the file system turned read-only cannot be removed any more
        assert listing(mnt) == [".m.tif.lock"]
        record("tmpfs remounted read-only after planning, before the first tile (--mask-out)", error.exit_code, error, ".m.tif.lock (empty)")


def test_read_only_directory(tmp_path, capsys, scene, checkpoint, record):
    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() == 0:
        pytest.skip("root writes into a 0555 directory; the read-only file system test covers root")
    locked.chmod(0o555)
    try:
        code, _, err = run(["predict", scene, "-e", "red", "-o", locked / "o.gpkg", "--checkpoint", checkpoint, "-q"], capsys)
        assert_one_line(code, err, "Permission denied")
        assert listing(locked) == []
        record("output in a 0555 directory", code, err, "nothing")
    finally:
        locked.chmod(0o755)


def test_output_directory_removed_during_the_run(tmp_path, scene, checkpoint, record):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    error = predict_error(scene, checkpoint, fail_during_run(lambda: shutil.rmtree(out_dir)),
                          output=out_dir / "o.gpkg", prob_out=out_dir / "p.tif")
    assert f"cannot write {out_dir / 'p.tif'}: the directory {out_dir} no longer exists" in str(error)
    assert not out_dir.exists()
    record("output directory deleted during the run", error.exit_code, error, "nothing (directory gone)")


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="taking a directory's write permission away from a running user needs root and setpriv")
def test_permission_taken_away_during_the_run(tmp_path, checkpoint, record):
    import subprocess
    import sys
    import tempfile
    import time
    from pathlib import Path

    base = Path(tempfile.mkdtemp(prefix="rrsis-eacces-"))  # outside pytest's private 0700 tree
    try:
        base.chmod(0o755)
        scene = textured_scene(base / "scene.tif", 768)  # a few seconds of tiles: time to intervene
        ckpt = Path(shutil.copytree(checkpoint, base / "ckpt"))
        for path in [ckpt, *ckpt.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        out_dir = base / "out"
        out_dir.mkdir()
        out_dir.chmod(0o777)
        repo = Path(__file__).resolve().parents[2]
        code = ("import sys; sys.path[:0] = sys.argv[1:3]; import geo_testdata; from rrsis_geo.cli import main; "
                "sys.exit(main(sys.argv[3:]))")
        argv = [sys.executable, "-c", code, str(repo), str(repo / "tests" / "geo"), "predict", str(scene), "-e", "red",
                "-o", str(out_dir / "o.gpkg"), "--mask-out", str(out_dir / "m.tif"), "--checkpoint", str(ckpt), "-q"]
        env = {**os.environ, "HOME": str(base)}
        run = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv],
                               stderr=subprocess.PIPE, text=True, env=env)
        while run.poll() is None and not (out_dir / ".o.gpkg.lock").exists():
            time.sleep(0.02)
        out_dir.chmod(0o755)  # the run's user (nobody) may no longer create files there
        err = run.stderr.read()
        run.stderr.close()
        assert run.wait(timeout=300) == 2, err
        assert err.strip().splitlines()[-1].startswith("rrsis-geo: error: cannot write "), err
        assert "Permission denied; check the directory's permissions" in err
        # nothing of the run's output; its lock files cannot be removed without the permission
        assert listing(out_dir) == [".m.tif.lock", ".o.gpkg.lock"]
        record("write permission on the output directory taken away during the run (run as nobody)", run.returncode,
               err.strip().splitlines()[-1], listing(out_dir))
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_a_directory_that_stops_accepting_files_between_the_checks_and_the_temporary_file(tmp_path, monkeypatch):
    # the race the test above can hit: the lock was taken, then the temporary name cannot be made
    from rrsis_geo import io_utils

    def refused(target, suffix=None):
        raise PermissionError(13, "Permission denied", str(tmp_path / ".m.x.tmp.tif"))

    with io_utils.OutputTransaction() as outputs:
        monkeypatch.setattr(io_utils, "temp_path_beside", refused)
        with pytest.raises(OutputError) as caught:
            outputs.add(tmp_path / "m.tif")
    message = str(caught.value)
    assert message.startswith(f"cannot write {tmp_path / 'm.tif'}: Permission denied") and "\n" not in message
    assert not (tmp_path / "m.tif").exists()


def test_a_removed_directory_is_worded_alike_whichever_call_noticed(tmp_path):
    # GDAL's bare "Write failed" and an OSError's ENOENT both reach write_failure; which one comes
    # first depends on the strip writer's thread, so both must give the same line
    import errno

    from rrsis_geo.io_utils import write_failure

    target = tmp_path / "gone" / "p.tif"
    bare = write_failure(target, RuntimeError("Write failed"))
    enoent = write_failure(target, FileNotFoundError(errno.ENOENT, "No such file or directory", str(target)))
    assert str(bare) == str(enoent) == (
        f"cannot write {target}: the directory {target.parent} no longer exists; "
        "it was removed during the run; create it again and rerun"
    )
