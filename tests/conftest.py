"""Suite-wide settings. Each area keeps its own fixtures in tests/<area>/conftest.py."""

import os
import sys

# Qt (QGIS tests) never needs a screen; torch stays on the CPU in CI.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _grad_mode_is_restored():
    """Fail the test that leaves autograd switched off for the tests after it."""
    yield
    torch = sys.modules.get("torch")  # never imported here: the QGIS tests' process must stay torch-free
    if torch is not None and not torch.is_grad_enabled():
        torch.set_grad_enabled(True)
        pytest.fail("this test left torch's grad mode disabled (use a context manager, not set_grad_enabled)")
