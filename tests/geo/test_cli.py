"""The rrsis-geo command: bad inputs (message, exit status 2, output directory untouched),
info, models (list, sha256-verified download), predict end to end, Ctrl-C, console script."""

import hashlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio

from rrsis_geo.cli import main

from geo_testdata import make_checkpoint, make_config, red_square_scene, snapshot, write_geotiff

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def scene(tmp_path):
    return write_geotiff(tmp_path / "scene.tif", red_square_scene(100, 90, slice(10, 40), slice(20, 60)))


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(argv, capsys, directory, message):
    """The command exits 2 with `rrsis-geo: error: ...message...`, no traceback, no change."""
    before = snapshot(directory)
    code, out, err = run(argv, capsys)
    assert code == 2, (out, err)
    assert err.startswith("rrsis-geo: error: "), err
    assert message in err, err
    assert "Traceback" not in err
    assert snapshot(directory) == before
    return err


# ---- bad input ----------------------------------------------------------------------------
def test_missing_scene(tmp_path, capsys, red_checkpoint):
    assert_refused(["predict", tmp_path / "nope.tif", "-e", "red", "-o", tmp_path / "o.gpkg", "--checkpoint", red_checkpoint],
                   capsys, tmp_path, "does not exist; check the path")


def test_not_a_raster(tmp_path, capsys, red_checkpoint):
    bad = tmp_path / "bad.tif"
    bad.write_text("hello")
    assert_refused(["predict", bad, "-e", "red", "-o", tmp_path / "o.gpkg", "--checkpoint", red_checkpoint],
                   capsys, tmp_path, "is not a raster GDAL can read")


def test_no_crs_is_refused_unless_allowed(tmp_path, capsys, red_checkpoint):
    path = write_geotiff(tmp_path / "n.tif", red_square_scene(50, 50, slice(5, 15), slice(5, 15)), crs=None, geotransform=False)
    out = tmp_path / "o.gpkg"
    assert_refused(["predict", path, "-e", "red", "-o", out, "--checkpoint", red_checkpoint], capsys, tmp_path, "--allow-no-crs")
    code, _, err = run(["predict", path, "-e", "red", "-o", out, "--checkpoint", red_checkpoint, "--allow-no-crs", "-q"], capsys)
    assert code == 0, err
    assert gpd.read_file(out).crs is None
    code, info, err = run(["info", path], capsys)  # info describes such a scene instead of refusing it
    assert code == 0, err
    assert "crs:          none  (predict needs --allow-no-crs)" in info and "gsd:          unknown (no CRS)" in info


def test_fewer_than_three_bands(tmp_path, capsys, red_checkpoint):
    path = write_geotiff(tmp_path / "g.tif", np.full((2, 40, 40), 200, np.uint8))
    out = tmp_path / "o.gpkg"
    assert_refused(["predict", path, "-e", "red", "-o", out, "--checkpoint", red_checkpoint], capsys, tmp_path, "--bands")
    code, _, err = run(["predict", path, "-e", "red", "-o", out, "--checkpoint", red_checkpoint, "--bands", "2,1,1", "-q"], capsys)
    assert code == 0, err
    assert_refused(["predict", path, "-e", "red", "-o", tmp_path / "p.gpkg", "--checkpoint", red_checkpoint, "--bands", "4,3"],
                   capsys, tmp_path, "bands '4,3' is not 3 comma-separated numbers; pass --bands (e.g. --bands 4,3,2)")


def test_all_nodata_scene(tmp_path, capsys, red_checkpoint):
    path = write_geotiff(tmp_path / "z.tif", np.zeros((3, 60, 60), np.uint8), nodata=0)
    assert_refused(["predict", path, "-e", "red", "-o", tmp_path / "o.gpkg", "--checkpoint", red_checkpoint],
                   capsys, tmp_path, "is nodata; there is nothing to segment")


@pytest.mark.parametrize("expression", ["", "   \t "])
def test_empty_expression(tmp_path, capsys, scene, red_checkpoint, expression):
    assert_refused(["predict", scene, "-e", expression, "-o", tmp_path / "o.gpkg", "--checkpoint", red_checkpoint],
                   capsys, tmp_path, "the referring expression is empty")


def test_missing_expression_and_empty_expressions_file(tmp_path, capsys, scene, red_checkpoint):
    assert_refused(["predict", scene, "-o", tmp_path / "o.gpkg"], capsys, tmp_path, "give an expression with -e")
    listing = tmp_path / "exprs.txt"
    listing.write_text("# nothing but a comment\n\n")
    assert_refused(["predict", scene, "--expressions-file", listing, "-o", tmp_path / "o.gpkg"], capsys, tmp_path, "holds no expression")


def test_long_expression_is_truncated_with_a_warning(tmp_path, capsys, scene, red_checkpoint):
    out = tmp_path / "o.gpkg"
    long = "red " + " ".join(["roof"] * 12)
    code, stdout, err = run(["predict", scene, "-e", long, "-o", out, "--checkpoint", red_checkpoint, "-q"], capsys)
    assert code == 0, err
    assert "rrsis-geo: warning: expression" in err and "reads only the first 8" in err
    assert out.exists() and f"{long}: 1 polygon" in stdout


def test_missing_corrupt_and_mismatched_checkpoints(tmp_path, capsys, scene, red_checkpoint):
    out = tmp_path / "o.gpkg"
    assert_refused(["predict", scene, "-e", "red", "-o", out, "--checkpoint", tmp_path / "none"], capsys, tmp_path,
                   "does not exist; `rrsis-geo models` lists the available ones")
    ckpts = tmp_path / "ckpts"
    corrupt = ckpts / "corrupt"
    shutil.copytree(red_checkpoint, corrupt)
    (corrupt / "config.json").write_text("{ not json")
    assert_refused(["predict", scene, "-e", "red", "-o", out, "--checkpoint", corrupt], capsys, tmp_path, "is not valid JSON")
    truncated = ckpts / "truncated"
    shutil.copytree(red_checkpoint, truncated)
    (truncated / "model.safetensors").write_bytes((red_checkpoint / "model.safetensors").read_bytes()[:100])
    assert_refused(["predict", scene, "-e", "red", "-o", out, "--checkpoint", truncated], capsys, tmp_path, "corrupt")
    mismatched = ckpts / "mismatched"
    shutil.copytree(red_checkpoint, mismatched)
    (mismatched / "config.json").write_text(json.dumps(make_config("test-plain")))
    assert_refused(["predict", scene, "-e", "red", "-o", out, "--checkpoint", mismatched], capsys, tmp_path,
                   "does not match its config")


def test_existing_output_needs_overwrite(tmp_path, capsys, scene, red_checkpoint):
    out = tmp_path / "o.gpkg"
    out.write_bytes(b"precious")
    assert_refused(["predict", scene, "-e", "red", "-o", out, "--checkpoint", red_checkpoint], capsys, tmp_path,
                   "already exists; pass --overwrite")
    assert out.read_bytes() == b"precious"
    code, _, err = run(["predict", scene, "-e", "red", "-o", out, "--checkpoint", red_checkpoint, "--overwrite", "-q"], capsys)
    assert code == 0, err
    assert len(gpd.read_file(out)) == 1


def test_unwritable_output_directory(tmp_path, capsys, scene, red_checkpoint):
    assert_refused(["predict", scene, "-e", "red", "-o", tmp_path / "missing" / "o.gpkg", "--checkpoint", red_checkpoint],
                   capsys, tmp_path, "does not exist; create")
    assert_refused(["predict", scene, "-e", "red", "-o", scene / "o.gpkg", "--checkpoint", red_checkpoint],
                   capsys, tmp_path, "is not a directory")
    assert_refused(["predict", scene, "-e", "red", "--mask-out", tmp_path, "--checkpoint", red_checkpoint],
                   capsys, tmp_path, "is a directory; give a file name")
    if os.geteuid() != 0:  # root writes anywhere; the probe-file check is what catches the rest
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        try:
            assert_refused(["predict", scene, "-e", "red", "-o", locked / "o.gpkg", "--checkpoint", red_checkpoint],
                           capsys, tmp_path, "cannot write output GeoPackage into")
        finally:
            locked.chmod(0o755)


def test_bbox_outside_the_scene(tmp_path, capsys, scene, red_checkpoint):
    assert_refused(["predict", scene, "-e", "red", "-o", tmp_path / "o.gpkg", "--checkpoint", red_checkpoint,
                    "--bbox", "0,0,10,10"], capsys, tmp_path, "does not overlap the scene")
    assert_refused(["predict", scene, "-e", "red", "-o", tmp_path / "o.gpkg", "--bbox", "1,2,3"], capsys, tmp_path,
                   "bbox '1,2,3' is not 4 comma-separated numbers; pass --bbox (e.g. --bbox minx,miny,maxx,maxy)")


def test_unavailable_device_and_bad_numbers(tmp_path, capsys, scene, red_checkpoint):
    import torch

    base = ["predict", scene, "-e", "red", "-o", tmp_path / "o.gpkg", "--checkpoint", red_checkpoint]
    if not torch.cuda.is_available():
        assert_refused(base + ["--device", "cuda"], capsys, tmp_path, "CUDA is not available on this machine; pass --device cpu")
    assert_refused(base + ["--threshold", "1.5"], capsys, tmp_path, "threshold 1.5 is out of range")
    assert_refused(base + ["--overlap", "0.95"], capsys, tmp_path, "overlap 0.95 is out of range")


# ---- predict ------------------------------------------------------------------------------
def test_predict_writes_every_requested_output(tmp_path, capsys, scene, red_checkpoint):
    exprs = tmp_path / "exprs.txt"
    exprs.write_text("# layers\ndark red\n")
    out, prob, mask = tmp_path / "o.gpkg", tmp_path / "p.tif", tmp_path / "m.tif"
    code, stdout, err = run(["predict", scene, "-e", "red", "--expressions-file", exprs, "-o", out, "--prob-out", prob,
                             "--mask-out", mask, "--checkpoint", red_checkpoint, "--min-area", "1", "--simplify", "0.1"], capsys)
    assert code == 0, err
    assert "red: 1 polygon (layer red)" in stdout and "dark red: 1 polygon (layer dark_red)" in stdout
    assert all(f"wrote {path.resolve()}" in stdout for path in (out, prob, mask))  # where they went, absolute
    assert "tile" in err  # the tqdm bar
    assert [name for name, _ in pyogrio.list_layers(out)] == ["red", "dark_red"]
    with rasterio.open(prob) as ds:
        assert ds.descriptions == ("red", "dark red")
    with rasterio.open(mask) as ds:
        assert ds.read(1)[10:40, 20:60].all() and ds.read(1).sum() == 30 * 40


def test_checkpoint_from_the_environment(tmp_path, capsys, scene, red_checkpoint, monkeypatch):
    monkeypatch.setenv("RRSIS_CHECKPOINT", str(red_checkpoint))
    code, _, err = run(["predict", scene, "-e", "red", "-o", tmp_path / "o.gpkg", "-q"], capsys)
    assert code == 0, err
    monkeypatch.setenv("RRSIS_CHECKPOINT", str(tmp_path / "gone"))
    assert_refused(["predict", scene, "-e", "red", "-o", tmp_path / "p.gpkg"], capsys, tmp_path, "does not exist")


def test_info_prints_what_the_library_sees(tmp_path, capsys, red_checkpoint):
    path = write_geotiff(tmp_path / "i.tif", red_square_scene(203, 171, slice(0, 5), slice(0, 5)), res=0.25, nodata=0)
    code, out, err = run(["info", path, "--checkpoint", red_checkpoint], capsys)
    assert code == 0, err
    assert "size:         171 x 203 px" in out and "3 band(s)" in out
    assert "bands:        1: red uint8 -> model R\n              2: green uint8 -> model G\n" in out
    assert "crs:          EPSG:32640 - WGS 84 / UTM zone 40N" in out
    assert "gsd:          0.25 x 0.25 m/px" in out
    assert "nodata:       0.0" in out
    assert "tiles:        16 (4 x 4) of 64 px, 25% overlap, stride 48 px" in out
    code, out, _ = run(["info", path, "--tile-size", "512", "--checkpoint", red_checkpoint], capsys)
    assert "tiles:        1 (1 x 1) of 512 px" in out
    assert_refused(["info", tmp_path / "nope.tif"], capsys, tmp_path, "does not exist")


# ---- models -------------------------------------------------------------------------------
def _zip_checkpoint(src: Path, archive: Path) -> str:
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(src.iterdir()):
            zf.write(f, f"red-test/{f.name}")
    return hashlib.sha256(archive.read_bytes()).hexdigest()


def test_models_download_verifies_sha256_and_installs(tmp_path, capsys, scene, red_checkpoint, monkeypatch):
    models = tmp_path / "models"
    monkeypatch.setenv("RRSIS_MODEL_DIR", str(models))
    monkeypatch.delenv("RRSIS_CHECKPOINT", raising=False)
    archive = tmp_path / "red.zip"
    digest = _zip_checkpoint(red_checkpoint, archive)
    manifest = tmp_path / "manifest.json"
    entries = [
        {"name": "red-test", "url": archive.as_uri(), "sha256": digest, "description": "red things"},
        {"name": "tampered", "url": archive.as_uri(), "sha256": "0" * 64, "description": "wrong hash"},
    ]
    manifest.write_text(json.dumps({"models": entries}))
    monkeypatch.setenv("RRSIS_MANIFEST", str(manifest))

    code, out, _ = run(["models"], capsys)
    assert code == 0 and "red-test" in out and archive.as_uri() in out and "tampered" in out

    err = assert_refused(["models", "--download", "tampered", "-q"], capsys, tmp_path, "the manifest says " + "0" * 64)
    assert "nothing was installed" in err
    assert_refused(["models", "--download", "unknown"], capsys, tmp_path, "no downloadable checkpoint named 'unknown'")

    code, out, err = run(["models", "--download", "red-test", "-q"], capsys)
    assert code == 0, err
    assert (models / "red-test" / "config.json").is_file()
    assert sorted(p.name for p in models.iterdir()) == ["red-test"]  # no leftovers
    code, out, _ = run(["models"], capsys)
    assert "red-test  " + str(models / "red-test") in out and "[installed]" in out
    assert_refused(["models", "--download", "red-test"], capsys, tmp_path, "already exists; pass --overwrite")

    code, stdout, err = run(["predict", scene, "-e", "red", "-o", tmp_path / "o.gpkg", "--checkpoint", "red-test", "-q"], capsys)
    assert code == 0, err


def test_models_download_refuses_unsafe_archives(tmp_path, capsys, monkeypatch):
    models = tmp_path / "models"
    monkeypatch.setenv("RRSIS_MODEL_DIR", str(models))
    evil_src = tmp_path / "evil.txt"
    evil_src.write_text("x")
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(evil_src, arcname="../evil.txt")
    manifest = tmp_path / "manifest.json"
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    manifest.write_text(json.dumps({"models": [{"name": "evil", "url": archive.as_uri(), "sha256": digest}]}))
    monkeypatch.setenv("RRSIS_MANIFEST", str(manifest))
    assert_refused(["models", "--download", "evil", "-q"], capsys, tmp_path, "unsafe")
    assert not models.exists()  # nothing unpacked, not even the model directory


# ---- real processes -----------------------------------------------------------------------
_RUNNER = (
    "import sys; sys.path.insert(0, {tests!r}); import geo_testdata; "
    "from rrsis_geo.cli import main; sys.exit(main(sys.argv[1:]))"
)


def test_ctrl_c_leaves_no_partial_output(tmp_path, tokenizer):
    """SIGINT to a real process in the middle of a run: exit 130, nothing written."""
    # 20 ms per batch of one tile: 961 tiles take ~20 s, so the signal always lands mid-run
    # (without the delay an idle machine finished the run between the check and the signal)
    slow = make_checkpoint(tmp_path / "slow", "test-red", tokenizer, delay_s=0.02)
    work = tmp_path / "work"
    work.mkdir()
    path = write_geotiff(work / "big.tif", red_square_scene(1500, 1500, slice(100, 1400), slice(100, 1400)))
    existing = work / "o.gpkg"
    existing.write_bytes(b"keep me")
    before = snapshot(work)
    code = _RUNNER.format(tests=str(Path(__file__).parent))
    argv = [sys.executable, "-c", code, "predict", str(path), "-e", "red", "-o", str(existing), "--overwrite",
            "--mask-out", str(work / "m.tif"), "--checkpoint", str(slow), "--batch-size", "1"]
    # SIGINT as a terminal has it: a job started in the background by a non-interactive shell (a CI
    # runner, `nohup ... &`) inherits it ignored, and Python then never raises KeyboardInterrupt
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = b""
    try:
        deadline = time.time() + 120
        # the masks are written once all tiles are done: interrupt when tiles are being processed
        while time.time() < deadline and proc.poll() is None and b"tile/s" not in seen:
            if select.select([proc.stderr], [], [], 0.5)[0]:
                seen += os.read(proc.stderr.fileno(), 65536)
        assert proc.poll() is None, seen.decode(errors="replace")
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=120)
        err = (seen + rest).decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "rrsis-geo: interrupted; no output was written" in err and "Traceback" not in err
    assert snapshot(work) == before


def test_console_script_with_a_tiny_lgce_checkpoint(tmp_path):
    """The installed `rrsis-geo` command on a real architecture (random tiny LGCE)."""
    from rrsis_geo.models.presets import init_checkpoint

    ckpt = init_checkpoint("tiny-lgce", tmp_path / "tiny-lgce")
    scene = write_geotiff(tmp_path / "s.tif", red_square_scene(70, 60, slice(10, 30), slice(10, 30)))
    exe = Path(sys.executable).with_name("rrsis-geo")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    out = tmp_path / "o.gpkg"
    result = subprocess.run(
        [str(exe), "predict", str(scene), "-e", "building along the road", "-e", "water", "-o", str(out),
         "--prob-out", str(tmp_path / "p.tif"), "--checkpoint", str(ckpt), "--device", "cpu", "-q"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert [n for n, _ in pyogrio.list_layers(out)] == ["building_along_the_road", "water"]
    assert gpd.read_file(out, layer="water").crs.to_epsg() == 32640
    with rasterio.open(tmp_path / "p.tif") as ds:
        p = ds.read()
        assert ds.count == 2 and ((p >= 0) & (p <= 1)).all() and p.std() > 0  # a real, position-varying output
    bad = subprocess.run([str(exe), "info", str(tmp_path / "missing.tif")], capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and bad.stderr.startswith("rrsis-geo: error: ") and "Traceback" not in bad.stderr
