"""The dock's worker panel: which Python runs the library, what it has, *Install now*."""

from __future__ import annotations

from typing import Any, Dict, Optional

from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtWidgets import QFrame, QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from . import deps


def summarize(hello: Dict[str, Any]) -> str:
    """One line per fact of a worker's hello: interpreter, library, torch and devices."""
    lines = [f"Python {hello.get('python_version', '?')}: {hello.get('python', '?')}"]
    if hello.get("rrsis"):
        lines.append(f"rrsis {hello['rrsis']} from {hello.get('rrsis_path', '?')}")
    else:
        lines.append(f"rrsis library not found ({hello.get('rrsis_error', 'unknown reason')})")
    if hello.get("torch"):
        gpu = hello.get("gpu")
        cuda = f"CUDA {hello['cuda']}" if hello.get("cuda") else "CPU build"
        devices = f"GPU: {gpu}" if gpu else "no GPU: runs on the CPU"
        lines.append(f"torch {hello['torch']} ({cuda}); {devices}")
    else:
        lines.append(f"torch missing ({hello.get('torch_error', 'not installed')})")
    return "\n".join(lines)


def usable(hello: Optional[Dict[str, Any]]) -> bool:
    """True when a probed worker can run the library."""
    return bool(hello) and hello.get("type") == "hello" and bool(hello.get("rrsis")) and not hello.get("missing")


class DependencyPanel(QFrame):
    """States the worker Python and its packages; creates the managed environment on request."""

    installed = pyqtSignal()

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.StyledPanel)
        self.runner: Optional[deps.StepRunner] = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        self.summary = QLabel()
        self.summary.setObjectName("rrsisWorkerSummary")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.explanation = QLabel()
        self.explanation.setWordWrap(True)
        self.explanation.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.explanation.setVisible(False)
        buttons = QHBoxLayout()
        self.install_button = QPushButton("Install now")
        self.install_button.setToolTip(
            f"Creates a Python environment under the QGIS profile ({deps.managed_venv_dir()}) and installs "
            f"{', '.join(deps.PACKAGES)} into it; QGIS's own Python is not touched"
        )
        self.install_button.setVisible(False)
        buttons.addWidget(self.install_button)
        buttons.addStretch(1)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumHeight(160)
        self.log.setVisible(False)
        layout.addWidget(self.summary)
        layout.addWidget(self.explanation)
        layout.addLayout(buttons)
        layout.addWidget(self.log)
        self.install_button.clicked.connect(self.install)

    # ---- what the dock tells it ----------------------------------------------------------
    def _explain(self, text: str, offer_install: bool) -> None:
        self.explanation.setText(text)
        self.explanation.setVisible(bool(text))
        self.install_button.setVisible(offer_install and self.runner is None)

    def show_no_python(self) -> None:
        self.summary.setText("Worker Python: none yet")
        self._explain(
            "The plugin runs the segmentation in a separate Python (QGIS's own is never modified). "
            f"Install now creates one under the QGIS profile and installs {', '.join(deps.PACKAGES)} "
            "(a few GB with torch). Or give an existing Python with these packages in Advanced → Worker "
            f"Python, or in ${deps.ENV}.",
            True,
        )

    def show_probing(self, choice: deps.PythonChoice) -> None:
        self.summary.setText(f"Worker Python: {choice.describe()}\nchecking what it has…")
        self._explain("", False)

    def show_probe(self, choice: deps.PythonChoice, hello: Dict[str, Any]) -> None:
        if hello.get("type") != "hello":
            self.summary.setText(f"Worker Python: {choice.describe()}")
            self._explain(f"{hello.get('text', 'it cannot run the worker')}", True)
            return
        self.summary.setText(summarize(hello))
        missing = list(hello.get("missing") or [])
        if missing:
            self._explain(
                f"Missing in this Python: {', '.join(missing)}. Install them there "
                f"({hello.get('python')} -m pip install {' '.join(missing)}), or click Install now for "
                "an environment the plugin manages (used when Advanced → Worker Python and "
                f"${deps.ENV} are empty).",
                True,
            )
        elif not hello.get("rrsis"):
            self._explain(
                f"This Python cannot import the rrsis library bundled with the plugin ({hello.get('rrsis_error')}); "
                "reinstall the plugin from its zip.",
                False,
            )
        else:
            self._explain("", False)

    # ---- Install now ---------------------------------------------------------------------
    def install(self) -> None:
        """Create (or update) the managed environment: the user clicked Install now."""
        if self.runner is not None:
            return
        self.log.clear()
        self.log.setVisible(True)
        base = deps.find_base_python()
        if base is None:
            self.log.appendPlainText(
                "no Python 3.10 or newer with venv was found on this machine: install one (python.org, or "
                "python3-venv on Debian/Ubuntu), or set Advanced → Worker Python"
            )
            return
        self.install_button.setEnabled(False)
        self.runner = deps.StepRunner(deps.install_steps(base, deps.managed_venv_dir()), self)
        self.runner.output.connect(self.log.appendPlainText)
        self.runner.step.connect(lambda i, n: self.summary.setText(f"Installing: step {i} of {n}…"))
        self.runner.finished.connect(self._install_finished)
        self.runner.start()

    def _install_finished(self, ok: bool) -> None:
        self.runner = None
        self.install_button.setEnabled(True)
        self.log.appendPlainText("done" if ok else "the installation failed: see the output above")
        if ok:
            self.installed.emit()

    def shutdown(self) -> None:
        if self.runner is not None:
            self.runner.kill()
            self.runner = None
