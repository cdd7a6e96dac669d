"""The expression box: splitting several expressions, the history, and completion."""

from __future__ import annotations

from typing import List

from qgis.core import QgsSettings
from qgis.PyQt.QtCore import QStringListModel, Qt
from qgis.PyQt.QtWidgets import QCompleter, QLineEdit

SETTINGS_PREFIX = "rrsis/"
HISTORY_KEY = SETTINGS_PREFIX + "history"
HISTORY_SIZE = 50
EXPRESSION_SEPARATOR = ";"


def load_history() -> List[str]:
    """Expressions the user ran before, most recent first (kept in QgsSettings)."""
    value = QgsSettings().value(HISTORY_KEY, [])
    if isinstance(value, str):
        value = [value]
    return [str(v) for v in (value or []) if str(v).strip()]


def remember_expressions(expressions: List[str]) -> List[str]:
    """Put ``expressions`` at the top of the history; return the new history."""
    history = list(expressions) + [h for h in load_history() if h not in expressions]
    history = history[:HISTORY_SIZE]
    QgsSettings().setValue(HISTORY_KEY, history)
    return history


def split_expressions(text: str, separator: str = EXPRESSION_SEPARATOR) -> List[str]:
    """Expressions in one text, split at ``separator`` (';' in the dock's box, a newline in
    Processing); whitespace normalised, blank and repeated ones dropped, order kept."""
    seen, out = set(), []
    for part in (text or "").split(separator):
        expression = " ".join(part.split())
        if expression and expression not in seen:
            seen.add(expression)
            out.append(expression)
    return out


class ExpressionCompleter(QCompleter):
    """Completes whole expressions from the history and the current word from the vocabulary."""

    def __init__(self, line_edit: QLineEdit) -> None:
        self._model = QStringListModel()
        super().__init__(self._model, line_edit)
        self.setCaseSensitivity(Qt.CaseInsensitive)
        self.setCompletionMode(QCompleter.PopupCompletion)
        self.history: List[str] = []
        self.vocabulary: List[str] = []
        line_edit.setCompleter(self)
        line_edit.textEdited.connect(self.refresh)

    def refresh(self, text: str = "") -> None:
        """Candidates for ``text``: history entries, and ``text`` with its last word completed."""
        head, _, _ = text.rpartition(" ")
        prefix = f"{head} " if head else ""
        words = [prefix + word for word in self.vocabulary]
        candidates = list(dict.fromkeys(self.history + words))
        self._model.setStringList(candidates)

    def candidates(self) -> List[str]:
        return self._model.stringList()
