"""The run directory: resume, a changed run set aside, adopted parts, one run at a time."""

from __future__ import annotations

import geopandas as gpd
import pytest
from shapely.geometry import box

from rrsis_geo.batch.rundir import DONE, FAILED, PENDING, RunDir
from rrsis_geo.errors import OutputBusyError


def _part(path, layers=("red",)):
    path.parent.mkdir(parents=True, exist_ok=True)
    for name in layers:
        gpd.GeoDataFrame({"expression": [name]}, geometry=[box(0, 0, 1, 1)], crs="EPSG:32640").to_file(
            path, layer=name, engine="pyogrio")


def test_states_resume_and_a_changed_run_is_set_aside(tmp_path):
    run = RunDir(tmp_path / "run")
    assert run.open({"expressions": ["red"], "options": {"overlap": 0.25}}) is None
    _part(run.part("a"))
    run.record_done("a", {"count": 1})
    run.record_failed("b", "cannot read b.tif", "input")
    assert run.state("a")["state"] == DONE and run.state("b") == {"state": FAILED, "error": "cannot read b.tif",
                                                                   "kind": "input"}
    assert run.state("c") == {"state": PENDING}
    assert RunDir(tmp_path / "run").open({"expressions": ["red"], "options": {"overlap": 0.25}}) is None  # resumed
    assert run.state("a")["state"] == DONE

    note = run.open({"expressions": ["red"], "options": {"overlap": 0.5}})
    assert "the options differ from the earlier run" in note and "superseded" in note
    assert run.state("a") == {"state": PENDING} and not run.part("a").exists()
    (aside,) = (tmp_path / "run" / "superseded").iterdir()
    assert (aside / "parts" / "a.gpkg").is_file() and (aside / "run.json").is_file()  # nothing deleted


def test_a_changed_part_runs_again_and_an_unrecorded_whole_part_is_adopted(tmp_path):
    run = RunDir(tmp_path / "run")
    run.open({"expressions": ["red"]})
    _part(run.part("a"))
    run.record_done("a", {})
    with open(run.part("a"), "ab") as part:
        part.write(b"changed")
    run = RunDir(tmp_path / "run")  # the next run (a run checks each part once)
    assert run.state("a")["state"] == PENDING and not run.part("a").exists()

    _part(run.part("b"))  # its worker finished after the driver stopped listening
    assert run.adopt("b", ["red"]) and run.state("b")["state"] == DONE
    _part(run.part("c"), layers=("other",))  # not this run's layers: run again
    assert not run.adopt("c", ["red"]) and not run.part("c").exists()
    run.record_failed("d", "bad", "input")
    _part(run.part("d"))
    assert not run.adopt("d", ["red"])  # a recorded state is never overruled by a stray part


def test_one_run_at_a_time_per_directory(tmp_path):
    run = RunDir(tmp_path / "run")
    with run.lock():
        with pytest.raises(OutputBusyError, match="another run is writing the run directory"):
            with RunDir(tmp_path / "run").lock():
                pass
    with run.lock():  # released
        pass
