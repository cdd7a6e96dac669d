#!/usr/bin/env python3
"""Build the installable QGIS plugin zip and check it.

The zip holds one folder, ``rrsis_qgis/`` (QGIS's plugin manager installs it as is):

    rrsis_qgis/
      __init__.py, plugin.py, dock.py, task.py, ...   the plugin (without its test harness)
      processing/                                      the Processing provider
      metadata.txt                                     copied from the repository's top level
      LICENSE                                          when the repository has one
      resources/icons/, resources/styles/              icon and result style
      resources/models/default/                        the default model, when installed and small
      libs/rrsis_geo/                                  the pure-Python library the plugin drives

Bundling ``rrsis_geo`` (pure Python, a few hundred KB) means the worker Python (the process that
runs the library outside QGIS, see rrsis_qgis/README.md) only needs the PyPI packages (torch,
rasterio, geopandas, ...); the worker puts ``libs/`` first on ``sys.path`` so the plugin's own
copy of the library is the one used. The default model is bundled when
``resources/models/default`` exists and stays under ``--max-model-mb`` (25 MB).

Checks after building: the layout (one top folder, no caches), the metadata fields QGIS and
plugins.qgis.org require, the icon named by the metadata, and, in a fresh Python process started
in an empty directory, that ``classFactory`` imports from the extracted zip, that the library it
uses is the bundled copy, (when QGIS is importable) that the Processing algorithm registers, and
that the worker started as the plugin starts it answers ``--probe`` with the bundled library.

    python scripts/package_plugin.py                 # -> dist/rrsis_qgis-<version>.zip
    python scripts/package_plugin.py --install       # also unpack into the default QGIS profile
"""

from __future__ import annotations

import argparse
import configparser
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Dict, Iterable, List, Optional, Tuple

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from rrsis_geo.io_utils import current_umask  # noqa: E402  (light: no torch, no GDAL)
PLUGIN = "rrsis_qgis"
LIBRARY = "rrsis_geo"
#: Files of the source package that are development tools, not part of the plugin.
EXCLUDED_PLUGIN_FILES = {"standalone.py"}
REQUIRED_METADATA = (
    "name", "qgisMinimumVersion", "description", "about", "version", "author", "email",
    "repository", "tracker", "tags", "icon", "experimental",
)
MIN_QGIS = (3, 22)


class PackagingError(Exception):
    """The plugin cannot be packaged, or the zip fails a check."""


# ------------------------------------------------------------------------------------ metadata


def read_metadata(path: Path) -> Dict[str, str]:
    """The ``[general]`` section of a metadata.txt."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keys are case-sensitive (qgisMinimumVersion)
    try:
        parser.read_string(path.read_text(encoding="utf-8"))
    except (OSError, configparser.Error) as exc:
        raise PackagingError(f"{path} cannot be read: {exc}") from exc
    if not parser.has_section("general"):
        raise PackagingError(f"{path} has no [general] section")
    return dict(parser.items("general"))


def _version_tuple(text: str) -> Tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def library_version() -> str:
    text = (REPO / LIBRARY / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__\s*=\s*["\']([^"\']+)["\']', text, re.M)
    if not match:
        raise PackagingError(f"{LIBRARY}/__init__.py has no __version__")
    return match.group(1)


def check_metadata(meta: Dict[str, str], icon_exists) -> List[str]:
    """Problems with the metadata (empty list: fine). ``icon_exists(path) -> bool``."""
    problems = [f"metadata field '{key}' is missing or empty" for key in REQUIRED_METADATA if not meta.get(key, "").strip()]
    if "plugin_dependencies" not in meta:
        problems.append("metadata field 'plugin_dependencies' is missing (leave it empty for none)")
    if meta.get("qgisMinimumVersion") and _version_tuple(meta["qgisMinimumVersion"]) < MIN_QGIS:
        problems.append(f"qgisMinimumVersion {meta['qgisMinimumVersion']} is below the tested {MIN_QGIS}")
    if meta.get("experimental", "").strip().lower() not in ("true", "false"):
        problems.append("metadata field 'experimental' must be True or False")
    for key in ("repository", "tracker"):
        if meta.get(key) and not re.match(r"^https://[^\s/]+\.[^\s/]+/\S+", meta[key]):
            problems.append(f"metadata field '{key}' must be an https URL")
    if meta.get("email") and not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", meta["email"]):
        problems.append("metadata field 'email' is not an e-mail address")
    if meta.get("version") and meta["version"] != library_version():
        problems.append(f"metadata version {meta['version']} differs from {LIBRARY} {library_version()}")
    if meta.get("icon") and not icon_exists(meta["icon"]):
        problems.append(f"the icon {meta['icon']} named by the metadata is not in the plugin")
    return problems


# -------------------------------------------------------------------------------------- build


def _files(root: Path) -> Iterable[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
            yield path


def _tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def plan_contents(include_model: bool, max_model_mb: float) -> Dict[str, Path]:
    """Archive name -> file on disk."""
    contents: Dict[str, Path] = {}
    for path in _files(REPO / PLUGIN):
        relative = path.relative_to(REPO / PLUGIN)
        if relative.parts[0] in EXCLUDED_PLUGIN_FILES:
            continue
        contents[f"{PLUGIN}/{relative.as_posix()}"] = path
    contents[f"{PLUGIN}/metadata.txt"] = REPO / "metadata.txt"
    for name in ("LICENSE", "LICENSE.txt", "LICENSE.md"):
        if (REPO / name).is_file():
            contents[f"{PLUGIN}/LICENSE"] = REPO / name
            break
    for folder in ("icons", "styles"):
        for path in _files(REPO / "resources" / folder):
            contents[f"{PLUGIN}/resources/{folder}/{path.relative_to(REPO / 'resources' / folder).as_posix()}"] = path
    model = REPO / "resources" / "models" / "default"
    if include_model and (model / "config.json").is_file():
        size_mb = _tree_size(model) / 2**20
        if size_mb <= max_model_mb:
            for path in _files(model):
                contents[f"{PLUGIN}/resources/models/default/{path.relative_to(model).as_posix()}"] = path
        else:
            print(f"note: the default model ({size_mb:.1f} MB) exceeds {max_model_mb} MB and is not bundled")
    for path in _files(REPO / LIBRARY):
        contents[f"{PLUGIN}/libs/{LIBRARY}/{path.relative_to(REPO / LIBRARY).as_posix()}"] = path
    return contents


def build(output: Path, contents: Dict[str, Path]) -> Path:
    """Write the zip next to ``output`` under a temporary name, then move it into place."""
    output.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    os.close(handle)
    try:
        with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            folders = set()
            for name in sorted(contents):
                for parent in list(PurePosixPath(name).parents)[:-1]:
                    folders.add(f"{parent}/")
            for folder in sorted(folders):  # explicit folder entries: some unzip tools want them
                archive.writestr(zipfile.ZipInfo(folder), "")
            for name in sorted(contents):
                archive.write(contents[name], name)
        os.chmod(temporary, 0o666 & ~current_umask())  # mkstemp's 0600 would keep the release private
        os.replace(temporary, output)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return output


# ------------------------------------------------------------------------------------- checks

_IMPORT_CHECK = r"""
import os, sys
root = sys.argv[1]
sys.path.insert(0, root)
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
import rrsis_qgis
assert os.path.dirname(rrsis_qgis.__file__) == os.path.join(root, "rrsis_qgis"), rrsis_qgis.__file__
assert callable(rrsis_qgis.classFactory)
import rrsis_geo, rrsis_geo.catalog
assert rrsis_geo.__file__.startswith(os.path.join(root, "rrsis_qgis", "libs")), rrsis_geo.__file__
print("classFactory: ok; rrsis_geo from", os.path.dirname(rrsis_geo.__file__))
try:
    from qgis.core import QgsApplication
    from qgis.PyQt.QtCore import QCoreApplication, QSettings
except ImportError:
    print("QGIS not importable here: plugin start not checked")
    sys.stdout.flush(); os._exit(0)
QCoreApplication.setOrganizationName("rrsis-plugin-check")  # settings stay in the check folder
QSettings.setDefaultFormat(QSettings.IniFormat)
QSettings.setPath(QSettings.IniFormat, QSettings.UserScope, os.path.join(root, ".settings"))
app = QgsApplication([], False, os.path.join(root, ".profile"))
app.initQgis()
plugin = rrsis_qgis.classFactory(None)
plugin.initProcessing()
algorithm = QgsApplication.processingRegistry().algorithmById("rrsis:segment")
assert algorithm is not None, "rrsis:segment is not registered"
print("Processing provider: ok;", algorithm.displayName())
plugin.unload()
sys.stdout.flush()
os._exit(0)  # skip Qt teardown at exit (crashes on some QGIS 3.22 builds)
"""


def check_worker(root: Path, python: str, env: Dict[str, str]) -> List[str]:
    """Start the extracted plugin's worker the way the plugin does (``--probe``): it must answer
    with a hello and run the bundled library."""
    probe = subprocess.run(
        [python, "-m", f"{PLUGIN}.worker", "--probe"],
        cwd=root, env=dict(env, PYTHONPATH=str(root)), capture_output=True, text=True, timeout=300,
    )
    try:
        hello = json.loads(probe.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return [f"the worker did not answer --probe:\n{(probe.stdout + probe.stderr).strip()[-2000:]}"]
    bundled = str(root / PLUGIN / "libs" / LIBRARY)
    if hello.get("type") != "hello" or hello.get("rrsis_path") != bundled:
        return [f"the worker's hello does not name the bundled library {bundled}: {hello}"]
    missing = ", ".join(hello.get("missing") or []) or "nothing"
    print(f"worker: ok; protocol {hello.get('protocol')}, torch {hello.get('torch')}, missing {missing}")
    return []


def validate(zip_path: Path, python: str) -> None:
    """Raise :class:`PackagingError` listing every problem found in the zip."""
    problems: List[str] = []
    with zipfile.ZipFile(zip_path) as archive:
        names = archive.namelist()
        bad = archive.testzip()
        if bad:
            problems.append(f"corrupt member {bad}")
        tops = {name.split("/", 1)[0] for name in names}
        if tops != {PLUGIN}:
            problems.append(f"the zip must hold exactly one top folder '{PLUGIN}/', found {sorted(tops)}")
        for name in names:
            if "__pycache__" in name or name.endswith((".pyc", ".pyo")):
                problems.append(f"compiled file in the zip: {name}")
            if name.startswith("/") or ".." in PurePosixPath(name).parts:
                problems.append(f"unsafe path in the zip: {name}")
        for needed in (f"{PLUGIN}/__init__.py", f"{PLUGIN}/metadata.txt", f"{PLUGIN}/libs/{LIBRARY}/__init__.py"):
            if needed not in names:
                problems.append(f"{needed} is missing")
        if f"{PLUGIN}/LICENSE" not in names:
            print("warning: no LICENSE in the zip (plugins.qgis.org asks for one); add LICENSE at the repository top")
        with tempfile.TemporaryDirectory(prefix="rrsis-plugin-check-") as folder:
            archive.extractall(folder)
            root = Path(folder)
            meta_path = root / PLUGIN / "metadata.txt"
            if meta_path.is_file():
                meta = read_metadata(meta_path)
                problems += check_metadata(meta, lambda icon: (root / PLUGIN / icon).is_file())
            if not problems:
                env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
                run = subprocess.run(
                    [python, "-c", _IMPORT_CHECK, folder],
                    cwd=folder, env=env, capture_output=True, text=True, timeout=600,
                )
                output = (run.stdout + run.stderr).strip()
                if run.returncode != 0:
                    problems.append(f"importing the extracted plugin failed:\n{output}")
                else:
                    print("\n".join(line for line in run.stdout.splitlines() if line.strip()))
                    problems += check_worker(root, python, env)
    if problems:
        raise PackagingError("the plugin zip is not valid:\n  - " + "\n  - ".join(problems))


# ----------------------------------------------------------------------------------- install


def default_plugins_dir() -> Path:
    """The default QGIS 3 profile's python/plugins folder on this platform."""
    if sys.platform.startswith("win"):
        base = Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming")) / "QGIS" / "QGIS3"
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support" / "QGIS" / "QGIS3"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "QGIS" / "QGIS3"
    return base / "profiles" / "default" / "python" / "plugins"


def install(zip_path: Path, plugins_dir: Path) -> Path:
    """Unpack the zip into ``plugins_dir``, replacing a previous rrsis_qgis there."""
    plugins_dir.mkdir(parents=True, exist_ok=True)
    target = plugins_dir / PLUGIN
    staging = Path(tempfile.mkdtemp(prefix=f".{PLUGIN}.", dir=plugins_dir))
    try:
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(staging)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging / PLUGIN, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Build and check the rrsis QGIS plugin zip.")
    parser.add_argument("-o", "--output", type=Path, default=None, help="zip path (default dist/rrsis_qgis-VERSION.zip)")
    parser.add_argument("--no-model", action="store_true", help="do not bundle resources/models/default")
    parser.add_argument("--max-model-mb", type=float, default=25.0)
    parser.add_argument("--python", default=sys.executable, help="interpreter for the import check (one that sees QGIS)")
    parser.add_argument("--install", nargs="?", const=str(default_plugins_dir()), default=None, metavar="PLUGINS_DIR",
                        help=f"unpack into a QGIS plugins folder (default {default_plugins_dir()})")
    args = parser.parse_args(argv)

    try:
        meta = read_metadata(REPO / "metadata.txt")
        problems = check_metadata(meta, lambda icon: (REPO / icon).is_file())
        if problems:
            raise PackagingError("metadata.txt:\n  - " + "\n  - ".join(problems))
        output = args.output or REPO / "dist" / f"{PLUGIN}-{meta['version']}.zip"
        contents = plan_contents(not args.no_model, args.max_model_mb)
        build(output, contents)
        size_kb = output.stat().st_size / 1024
        print(f"built {output} ({len(contents)} files, {size_kb:.0f} KB)")
        validate(output, args.python)
        print("checks: ok")
        if args.install:
            print(f"installed into {install(output, Path(args.install))}")
    except PackagingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
