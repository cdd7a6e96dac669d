"""scripts/package_plugin.py builds a zip QGIS can install, and its checks catch bad metadata."""

import importlib.util
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def package_plugin():
    spec = importlib.util.spec_from_file_location("package_plugin", REPO / "scripts" / "package_plugin.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["package_plugin"] = module
    spec.loader.exec_module(module)
    return module


def test_zip_builds_and_passes_its_checks(package_plugin, tmp_path, capsys):
    output = tmp_path / "rrsis_qgis.zip"
    assert package_plugin.main(["-o", str(output)]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "classFactory: ok" in printed and "Processing provider: ok" in printed and "worker: ok" in printed
    with zipfile.ZipFile(output) as archive:
        names = set(archive.namelist())
        metadata = archive.read("rrsis_qgis/metadata.txt").decode()
    assert {"rrsis_qgis/__init__.py", "rrsis_qgis/plugin.py", "rrsis_qgis/processing/algorithm.py"} <= names
    assert "rrsis_qgis/libs/rrsis_geo/pipeline.py" in names
    assert "rrsis_qgis/resources/styles/result.qml" in names
    assert "rrsis_qgis/resources/icons/rrsis.svg" in names
    assert "rrsis_qgis/standalone.py" not in names  # the test harness is not shipped
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert metadata == (REPO / "metadata.txt").read_text(encoding="utf-8")


def test_metadata_checks_catch_problems(package_plugin):
    good = package_plugin.read_metadata(REPO / "metadata.txt")
    assert package_plugin.check_metadata(good, lambda icon: True) == []
    bad = dict(good, email="", qgisMinimumVersion="3.16", experimental="maybe", tracker="github.com/x")
    del bad["plugin_dependencies"]
    problems = "\n".join(package_plugin.check_metadata(bad, lambda icon: False))
    for expected in ("'email'", "qgisMinimumVersion 3.16", "'experimental'", "'tracker'", "plugin_dependencies", "icon"):
        assert expected in problems


def test_validation_rejects_a_zip_with_two_top_folders(package_plugin, tmp_path):
    output = tmp_path / "plugin.zip"
    package_plugin.build(output, package_plugin.plan_contents(False, 25.0))
    with zipfile.ZipFile(output, "a") as archive:
        archive.writestr("stray/readme.txt", "not part of the plugin")
    with pytest.raises(package_plugin.PackagingError, match="exactly one top folder"):
        package_plugin.validate(output, sys.executable)
