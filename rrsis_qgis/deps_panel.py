"""The dock's panel for missing Python packages: what is missing, the pip command, Install."""

from __future__ import annotations

from typing import List, Optional

from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QGuiApplication
from qgis.PyQt.QtWidgets import QFrame, QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from . import deps


class DependencyPanel(QFrame):
    """Explains missing packages; installs them only when "Install" is clicked."""

    installed = pyqtSignal()

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.StyledPanel)
        self.installer: Optional[deps.PipInstaller] = None
        self.missing: List[deps.Requirement] = []
        layout = QVBoxLayout(self)
        self.explanation = QLabel()
        self.explanation.setWordWrap(True)
        self.explanation.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.command = QPlainTextEdit()
        self.command.setReadOnly(True)
        self.command.setMaximumHeight(80)
        buttons = QHBoxLayout()
        self.copy_button = QPushButton("Copy command")
        self.install_button = QPushButton("Install now")
        self.install_button.setToolTip("Runs the command above with QGIS's Python; restart QGIS afterwards")
        buttons.addWidget(self.copy_button)
        buttons.addWidget(self.install_button)
        buttons.addStretch(1)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setVisible(False)
        layout.addWidget(self.explanation)
        layout.addWidget(self.command)
        layout.addLayout(buttons)
        layout.addWidget(self.log)
        self.copy_button.clicked.connect(self.copy_command)
        self.install_button.clicked.connect(self.install)

    def show_missing(self, missing: List[deps.Requirement]) -> None:
        self.missing = list(missing)
        self.argv = deps.pip_arguments(missing)
        text = deps.describe_missing(missing)
        if self.argv:
            text += "\n\nRun this in a terminal (it installs into the Python QGIS uses, keeping its NumPy), or click Install now:"
        self.explanation.setText(text)
        self.command.setPlainText(deps.format_command(self.argv) if self.argv else "")
        self.command.setVisible(bool(self.argv))
        self.copy_button.setVisible(bool(self.argv))
        self.install_button.setVisible(bool(self.argv))
        self.setVisible(True)

    def copy_command(self) -> None:
        QGuiApplication.clipboard().setText(self.command.toPlainText())

    def install(self) -> None:
        """Run pip (the user clicked): output goes to the log box below."""
        if self.installer is not None or not self.argv:
            return
        self.log.clear()
        self.log.setVisible(True)
        self.install_button.setEnabled(False)
        self.installer = deps.PipInstaller(self.argv, self)
        self.installer.output.connect(self.log.appendPlainText)
        self.installer.finished.connect(self._install_finished)
        self.installer.start()

    def _install_finished(self, ok: bool) -> None:
        self.installer = None
        self.install_button.setEnabled(True)
        self.log.appendPlainText("done: restart QGIS to use the new packages" if ok else "pip failed: see the output above")
        if ok:
            self.installed.emit()
