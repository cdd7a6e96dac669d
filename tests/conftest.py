"""Suite-wide settings. Each area keeps its own fixtures in tests/<area>/conftest.py."""

import os

# Qt (QGIS tests) never needs a screen; torch stays on the CPU in CI.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
