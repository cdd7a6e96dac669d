"""Polygonising, planning, vocabulary and the early checks need no torch (nor does `--help`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

TORCH_FREE = [
    "rrsis_geo.vectorize", "rrsis_geo.rasterout", "rrsis_geo.sinks", "rrsis_geo.scaleplan", "rrsis_geo.understanding",
    "rrsis_geo.knowledge", "rrsis_geo.models.vocabulary", "rrsis_geo.memory", "rrsis_geo.cpu", "rrsis_geo.errors",
    "rrsis_geo.io_utils", "rrsis_geo.raster", "rrsis_geo.options", "rrsis_geo.checkpoint_config",
    "rrsis_geo.models.config_file", "rrsis_geo.grid", "rrsis_geo.model_cache", "rrsis_geo.calibration",
]


def imported_after(code: str) -> set:
    probe = (f"import sys\n{code}\nprint('LOADED:' + ' '.join(sorted(m for m in ('torch', 'transformers', 'timm') "
             "if m in sys.modules)))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.rsplit("LOADED:", 1)[1].split())


def test_the_torch_free_modules_import_no_torch():
    assert imported_after("\n".join(f"import {name}" for name in TORCH_FREE)) == set()


def test_the_models_package_loads_torch_only_when_a_model_name_is_used():
    assert imported_after("import rrsis_geo.models") == set()
    assert "torch" in imported_after("from rrsis_geo.models import build_model")


def test_help_and_a_refusal_path_stay_torch_free():
    assert imported_after("import rrsis_geo.cli as c\ntry:\n    c.main(['--help'])\nexcept SystemExit:\n    pass") == set()


def test_info_on_a_scene_stays_torch_free(tmp_path):
    """`rrsis-geo info SCENE` (with the default model's card) plans the tiles without torch (issue 23:
    info under a second); only `info -e` loads the model to read the expressions."""
    scene = REPO / "resources" / "sample" / "munich_street_sample.tif"
    code = (f"import rrsis_geo.cli as c\nassert c.main(['info', {str(scene)!r}]) == 0")
    assert imported_after(code) == set()
