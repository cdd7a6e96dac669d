"""Where the plugin finds its resources and, in a packaged plugin, the bundled library.

Two layouts are supported:

* the source tree: ``<repo>/rrsis_qgis/`` next to ``<repo>/resources/`` and ``<repo>/rrsis_geo/``
  (an editable install puts ``rrsis_geo`` on ``sys.path``);
* the packaged plugin (``scripts/package_plugin.py``): ``<plugins>/rrsis_qgis/resources/`` and
  ``<plugins>/rrsis_qgis/libs/rrsis_geo/``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Optional

PLUGIN_DIR = Path(__file__).resolve().parent
LIBS_DIRNAME = "libs"


def resources_dir() -> Path:
    """The ``resources`` folder of the packaged plugin, else the one of the source tree."""
    bundled = PLUGIN_DIR / "resources"
    if bundled.is_dir():
        return bundled
    return PLUGIN_DIR.parent / "resources"


def style_path() -> Path:
    """QML style applied to every result layer."""
    return resources_dir() / "styles" / "result.qml"


def icon_path() -> Path:
    """The plugin icon (SVG)."""
    return resources_dir() / "icons" / "rrsis.svg"


def bundled_default_checkpoint() -> Optional[Path]:
    """The default model shipped inside the plugin or the source tree, if there is one."""
    path = resources_dir() / "models" / "default"
    return path if (path / "config.json").is_file() else None


def activate_bundled_libraries() -> Optional[Path]:
    """Put the plugin's bundled ``libs`` folder first on ``sys.path``.

    The packaged plugin carries the pure-Python ``rrsis_geo`` matching its own version; it goes
    first so that an older ``rrsis_geo`` installed elsewhere cannot shadow it. In the source tree
    there is no ``libs`` folder: the installed (editable) ``rrsis_geo`` is used, else the one beside
    this package (QGIS's own Python, with the plugin linked into its plugins folder). The plugin
    itself reads only the library's standard-library-only modules (its options schema, errors and
    checkpoint config).
    """
    libs = PLUGIN_DIR / LIBS_DIRNAME
    if not libs.is_dir():
        beside = PLUGIN_DIR.parent
        if (beside / "rrsis_geo" / "options.py").is_file() and importlib.util.find_spec("rrsis_geo") is None:
            sys.path.append(str(beside))
        return None
    entry = str(libs)
    if entry not in sys.path:
        sys.path.insert(0, entry)
    return libs
