"""A checkpoint with flipped bytes in its safetensors header or a tensor of the wrong shape;
two runs writing the same output at once (one wins whole, the other gets a clear error)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyogrio
import pytest
from safetensors import safe_open
from safetensors.torch import save_file

import rrsis_geo
from fault_testdata import assert_one_line, run, flip_bits, listing
from geo_testdata import make_checkpoint, red_square_scene, write_geotiff
from rrsis_geo.errors import OutputBusyError

REPO = Path(__file__).resolve().parents[2]


def test_flipped_bytes_in_the_safetensors_header(tmp_path, capsys, scene, checkpoint, record):
    damaged = Path(shutil.copytree(checkpoint, tmp_path / "ckpt"))
    weights = damaged / "model.safetensors"
    header_length = int.from_bytes(weights.read_bytes()[:8], "little")
    flip_bits(weights, weights, [8 + header_length // 3, 8 + header_length // 2])
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, _, err = run(["predict", scene, "-e", "red", "-o", out_dir / "o.gpkg", "--checkpoint", damaged, "-q"], capsys)
    assert_one_line(code, err, f"{weights} is not a readable safetensors file", "the checkpoint is corrupt")
    assert listing(out_dir) == []
    record("2 bytes flipped in the safetensors JSON header", code, err, "nothing")


def test_tensor_of_the_wrong_shape(tmp_path, capsys, scene, checkpoint, record):
    damaged = Path(shutil.copytree(checkpoint, tmp_path / "ckpt"))
    weights = damaged / "model.safetensors"
    with safe_open(str(weights), framework="pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        metadata = handle.metadata()
    tensors["gain_table"] = tensors["gain_table"][:1000].clone()
    save_file(tensors, str(weights), metadata=metadata)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, _, err = run(["predict", scene, "-e", "red", "-o", out_dir / "o.gpkg", "--checkpoint", damaged, "-q"], capsys)
    assert_one_line(code, err, "tensor 'gain_table' has shape (1000,) in model.safetensors but the config builds (30522,)")
    assert listing(out_dir) == []
    record("tensor gain_table saved with shape (1000,) instead of (30522,)", code, err, "nothing")


@pytest.mark.parametrize("overwrite", [False, True])
def test_second_run_on_a_busy_output_is_refused(tmp_path, scene, checkpoint, overwrite, record):
    out = tmp_path / "o.gpkg"
    first_running, second_tried = threading.Event(), threading.Event()
    outcome = {}

    def hold_after_first_batch(done, total, message):
        if done >= 1:
            first_running.set()
            second_tried.wait(timeout=60)

    def first():
        outcome["first"] = rrsis_geo.predict(scene, "red", checkpoint=checkpoint, device="cpu", output=out,
                                             overwrite=overwrite, progress=hold_after_first_batch)

    thread = threading.Thread(target=first)
    thread.start()
    try:
        with pytest.raises(OutputBusyError) as caught:
            assert first_running.wait(timeout=60)  # the first run holds the output, half-way through
            rrsis_geo.predict(scene, "red", checkpoint=checkpoint, device="cpu", output=out, overwrite=overwrite)
    finally:
        second_tried.set()
        thread.join(timeout=60)
    assert str(caught.value) == f"another run is writing output GeoPackage {out} right now; wait for it to finish or choose another output file"
    assert len(outcome["first"]) == 1 and len(pyogrio.read_dataframe(out)) == 1
    assert listing(tmp_path) == ["o.gpkg"]
    record(f"second predict on an output a running one holds{' (--overwrite)' if overwrite else ''}",
           caught.value.exit_code, caught.value, "o.gpkg, whole, from the first run")


@pytest.mark.slow
def test_two_processes_racing_for_one_output(tmp_path, tokenizer_for_faults, record):
    # a model that takes 0.25 s per batch: the run that wins holds the lock for seconds, far longer
    # than the two processes' start-up times differ, so the loser must meet the lock, not the file
    slow = make_checkpoint(tmp_path.parent / f"{tmp_path.name}-slow", "test-red", tokenizer_for_faults, delay_s=0.25)
    scene = write_geotiff(tmp_path / "big.tif", red_square_scene(1024, 1024, slice(100, 400), slice(200, 300)))
    out = tmp_path / "o.gpkg"
    code = ("import sys; sys.path[:0] = sys.argv[1:3]; import geo_testdata; from rrsis_geo.cli import main; "
            "sys.exit(main(sys.argv[3:]))")
    argv = [sys.executable, "-c", code, str(REPO), str(REPO / "tests" / "geo"), "predict", str(scene), "-e", "red",
            "-o", str(out), "--checkpoint", str(slow), "-q"]
    runs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    finished = []  # order of the exits, polled
    while len(finished) < 2:
        for index, process in enumerate(runs):
            if index not in finished and process.poll() is not None:
                finished.append(index)
        time.sleep(0.02)
    results = [(p.returncode, p.stderr.read()) for p in runs]
    for p in runs:
        p.stdout.close()
        p.stderr.close()
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser_index = next(i for i, (code, _) in enumerate(results) if code == 2)
    loser = results[loser_index][1]
    assert len(loser.strip().splitlines()) == 1 and loser.startswith("rrsis-geo: error: "), loser
    # contended: the loser met the winner's lock while the winner was running (it ended first)
    assert "another run is writing" in loser, loser
    assert finished[0] == loser_index, finished
    frame = pyogrio.read_dataframe(out)
    assert len(frame) == 1 and frame.area.iloc[0] == pytest.approx(300 * 100 * 0.25)
    assert listing(tmp_path) == ["big.tif", "o.gpkg"]
    record("two rrsis-geo processes started together on one output", "0 and 2", loser, "o.gpkg, whole (1 polygon)")


def test_lock_left_by_a_killed_run_does_not_block(tmp_path, scene, checkpoint):
    (tmp_path / ".o.gpkg.lock").write_bytes(b"")  # what a run killed with SIGKILL leaves (its flock died with it)
    result = rrsis_geo.predict(scene, "red", checkpoint=checkpoint, device="cpu", output=tmp_path / "o.gpkg")
    assert len(result) == 1
    assert listing(tmp_path) == ["o.gpkg"]
