"""The one options schema: every front end derives from it, the worker protocol round-trips it,
errors carry the option that fixes them and each front end words it in its own terms."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rrsis_geo import options as schema
from rrsis_geo.cli import build_parser
from rrsis_geo.errors import Fix, InputError, OutputError, ScaleError
from rrsis_geo.options import CLI, DOCK, PROCESSING, PYTHON, WORKER, PredictOptions, advice, describe, specs

REPO = Path(__file__).resolve().parents[2]


def _predict_parser():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices["predict"]


def test_every_cli_option_of_the_schema_is_a_predict_flag_and_back():
    actions = {a.dest: a for a in _predict_parser()._actions}
    for spec in specs(CLI):
        assert spec.name in actions, f"rrsis-geo predict has no flag for {spec.name}"
        assert spec.cli_flag in actions[spec.name].option_strings
    # and nothing the predict command parses as an option is missing from the schema
    own = {"help", "scenes", "expression", "expressions_file", "quiet"}
    assert set(actions) - own == {s.name for s in specs(CLI)}


def test_flags_parse_into_validated_options():
    args = _predict_parser().parse_args(["a.tif", "-e", "x", "-o", "o.gpkg", "--bands", "4,3,2", "--bbox", "0,0,2,1",
                                         "--overlap", "0.5", "--on-read-error", "skip", "--no-resample", "--force-gsd"])
    options = schema.from_arguments(args)
    assert options.bands == [4, 3, 2] and options.bbox == (0.0, 0.0, 2.0, 1.0)
    assert options.overlap == 0.5 and options.on_read_error == "skip" and options.resample is False and options.force_gsd
    assert options.output == "o.gpkg" and options.device == "auto" and options.tile_size is None


def test_defaults_are_valid_and_every_field_has_its_spec():
    defaults = PredictOptions().validate()
    for spec in specs():
        assert getattr(defaults, spec.name) == spec.default
        assert spec.help and spec.front_ends and set(spec.front_ends) <= set(schema.EVERYWHERE)
        if DOCK in spec.front_ends:
            assert spec.dock, f"{spec.name} is offered by the dock but has no dock name"
        if PROCESSING in spec.front_ends:
            assert spec.processing and spec.processing == spec.processing.upper()
        if spec.front_ends != (CLI,):
            assert WORKER in spec.front_ends, f"{spec.name}: the plugin's front ends reach the library through the worker"


options_strategy = st.builds(
    PredictOptions,
    checkpoint=st.one_of(st.none(), st.text(min_size=1, max_size=20)),
    device=st.sampled_from(["auto", "cpu", "cuda", "cuda:1"]),
    tile_size=st.one_of(st.none(), st.integers(16, 4096)),
    overlap=st.floats(0.0, 0.89),
    threshold=st.one_of(st.none(), st.floats(0.01, 0.99)),
    bands=st.one_of(st.none(), st.lists(st.integers(1, 12), min_size=3, max_size=3)),
    bbox=st.one_of(st.none(), st.tuples(st.floats(-1e6, 0), st.floats(-1e6, 0), st.floats(1, 1e6), st.floats(1, 1e6))),
    force_gsd=st.booleans(),
    on_read_error=st.sampled_from(["fail", "skip"]),
    overwrite=st.booleans(),
)


@settings(max_examples=60, deadline=None)
@given(options_strategy)
def test_the_worker_protocol_round_trips_the_options(options):
    options.validate()
    line = json.dumps(options.to_dict(WORKER))  # what the plugin sends
    back = PredictOptions.from_dict(json.loads(line))  # what the worker rebuilds
    for spec in specs(WORKER):
        assert getattr(back, spec.name) == getattr(options, spec.name), spec.name
    assert PredictOptions.from_dict({**options.to_dict(), "not_an_option": 1, "scene": "x"}) == back


@pytest.mark.parametrize("values, words", [
    ({"overlap": 0.95}, "overlap 0.95 is out of range [0.0, 0.9)"),
    ({"threshold": 0}, "threshold 0.0 is out of range (0.0, 1.0)"),
    ({"tile_size": 8}, "tile size 8 is too small"),
    ({"batch_size": 0}, "batch size 0 must be at least 1"),
    ({"device": "gpu"}, "device 'gpu' must be one of auto, cpu, cuda or cuda:N"),
    ({"on_read_error": "ignore"}, "on_read_error 'ignore' must be one of fail, skip"),
    ({"bands": [1, 2]}, "bands [1, 2] must be three 1-based band numbers"),
    ({"bbox": [0, 0, -1, 1]}, "bbox [0, 0, -1, 1] must be minx, miny, maxx, maxy"),
    ({"force_gsd": "yes"}, "force_gsd must be true or false"),
])
def test_values_out_of_the_schema_are_refused_naming_the_option(values, words):
    with pytest.raises(InputError, match=words.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")) as caught:
        PredictOptions.from_dict(values)
    assert caught.value.fix.option == next(iter(values))


def test_predict_keywords_are_the_schema():
    with pytest.raises(TypeError, match="no_such_option"):
        PredictOptions().replace(no_such_option=1)
    assert PredictOptions().replace(overlap=0.5).overlap == 0.5


FIXES = [
    (Fix("on_read_error", "skip", effect="to treat unreadable windows as nodata"),
     "pass --on-read-error skip to treat unreadable windows as nodata",
     "choose Advanced → Unreadable pixels: Skip (nodata) to treat unreadable windows as nodata",
     "set ON_READ_ERROR to skip to treat unreadable windows as nodata",
     "set on_read_error='skip' to treat unreadable windows as nodata"),
    (Fix("force_gsd", effect="to run it anyway"),
     "pass --force-gsd to run it anyway", "tick Advanced → Coarse scenes: Run anyway",
     "set FORCE_GSD to True to run it anyway", "set force_gsd=True to run it anyway"),
    (Fix("bands", example=[1, 1, 1], effect="for a grey image"),
     "pass --bands (e.g. --bands 1,1,1) for a grey image", "change Advanced → Bands (e.g. 1,1,1) for a grey image",
     "set BANDS (e.g. 1,1,1) for a grey image", "set bands (e.g. bands=[1, 1, 1]) for a grey image"),
    (Fix("crs", example="EPSG:32640"), "pass --crs (e.g. --crs EPSG:32640)", None, None, "set crs (e.g. crs='EPSG:32640')"),
    (Fix("device", "cpu"), "pass --device cpu", "choose Device: CPU", "set DEVICE to cpu", "set device='cpu'"),
    (Fix("resample", False), "pass --no-resample", None, None, "set resample=False"),
]


@pytest.mark.parametrize("fix, cli, dock, processing, python", FIXES)
def test_each_front_end_words_a_fix_in_its_own_terms(fix, cli, dock, processing, python):
    assert advice(fix, CLI) == cli
    assert advice(fix, DOCK) == dock  # None: the dock offers no such control
    assert advice(fix, PROCESSING) == processing
    assert advice(fix, PYTHON) == python


def test_errors_keep_their_fix_apart_from_their_message():
    error = ScaleError("'houses' needs a scene of 3 m/px or finer; use finer imagery",
                       fix=Fix("force_gsd", effect="to run it anyway", alternative=True))
    assert error.message == "'houses' needs a scene of 3 m/px or finer; use finer imagery"
    assert describe(error, CLI).endswith("use finer imagery, or pass --force-gsd to run it anyway")
    assert describe(error, DOCK).endswith("use finer imagery, or tick Advanced → Coarse scenes: Run anyway")
    assert str(error).endswith("or set force_gsd=True to run it anyway")  # the API's words
    copy = pickle.loads(pickle.dumps(error))  # process pools and distributed workers keep the fix
    assert type(copy) is ScaleError and copy.fix == error.fix and str(copy) == str(error)
    assert Fix.from_dict(json.loads(json.dumps(error.fix.to_dict()))) == error.fix
    plain = OutputError("no room on the disk")
    assert plain.fix is None and str(plain) == plain.message == describe(plain, DOCK) == "no room on the disk"


def test_existing_output_advice_per_front_end(tmp_path):
    from rrsis_geo.io_utils import check_output_target

    (tmp_path / "o.gpkg").write_bytes(b"x")
    with pytest.raises(OutputError) as caught:
        check_output_target(tmp_path / "o.gpkg", what="output GeoPackage")
    assert describe(caught.value, CLI).endswith("already exists; pass --overwrite to replace it")
    assert describe(caught.value, DOCK).endswith("already exists; tick Output → Replace if it exists")


def test_the_schema_needs_nothing_but_the_standard_library():
    """The plugin imports it inside QGIS's process, which must not load torch or a second GDAL."""
    code = ("import sys; import rrsis_geo.options, rrsis_geo.errors; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'numpy', 'rasterio', 'shapely', 'pyogrio', 'geopandas', 'pyproj', 'osgeo')); print(bad)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_none_means_the_default_and_info_shares_predicts_flags():
    assert PredictOptions(device=None, overlap=None).validate().device == "auto"
    with pytest.raises(InputError, match="tile_size must be a whole number"):
        PredictOptions(tile_size=float("inf")).validate()
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    info = {a.dest: a for a in sub.choices["info"]._actions}
    predict = {a.dest: a for a in _predict_parser()._actions}
    for name in ("checkpoint", "tile_size", "overlap", "bands", "bbox", "force_gsd"):
        assert info[name].option_strings == predict[name].option_strings and info[name].help == predict[name].help
