"""Per-category calibration of a model's probabilities (``config.json`` field ``calibration``).

A model trained with a loss that treats every category alike can still be under-confident on
some: round 3 of the default marks vegetation with precision 0.88 and recall 0.48 on the whole
validation images, buses with precision 0.76 and recall 0.07 on crops. A logit offset per
category, fitted after training (:mod:`training.calibrate`), moves each category's decision point
without changing the ranking of pixels within an image:

    calibrated probability = sigmoid(logit + offset[category])

What to fit it on matters (measured, ``training/README.md``, "Round 4"): on the crops the model
trained on it is already calibrated (round 3's vegetation there: precision 0.79, recall 0.81) and
a rare kind is memorised (round 4: 16 truck triplets asked for an offset of -2.25, i.e. *fewer*
trucks), so an offset fitted there cannot see the gap that opens on images it never saw. Fit it on
images held out of training, never on the validation split that measures the result. The shipped
default carries no calibration for that reason; checkpoints without the field are unchanged.

The category of an expression is the first one it is understood as naming
(:func:`rrsis_geo.understanding.explain_with`: "light-duty vehicle in the parking area" ->
light-duty vehicle; "greenery" -> vegetation by similarity); an expression that names no known
category keeps offset 0, the model's own probability. The user's threshold (``--threshold``, the
dock's slider) applies to the calibrated probability, so a category's effective threshold on the
raw one is ``sigmoid(threshold_logit - offset)``: :meth:`Calibration.raw_threshold`.

Standard library only: the plugin reads it in QGIS's process through the typed config.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from .errors import CheckpointError

#: offsets beyond this are refused: a threshold outside ~[0.007, 0.993] on the raw probability
#: says the fit went wrong, not that the model needs it
MAX_OFFSET = 5.0


@dataclass(frozen=True)
class Calibration:
    """Logit offsets per category and what they were fitted on (JSON: ``to_dict``/``from_dict``)."""

    offsets: Tuple[Tuple[str, float], ...]
    fitted_on: str = ""

    def __post_init__(self) -> None:  # one order, so that equal calibrations compare equal
        names = [c for c, _ in self.offsets]
        if len(set(names)) != len(names):
            raise CheckpointError(f"calibration names a category twice: {sorted(names)}")
        object.__setattr__(self, "offsets", tuple(sorted((str(c), float(o)) for c, o in self.offsets)))

    @classmethod
    def from_dict(cls, value: Any, where: str = "config.json") -> "Calibration":
        """Check ``{"offsets": {category: logit offset}, "fitted_on": "..."}``."""
        if not isinstance(value, Mapping) or not isinstance(value.get("offsets"), Mapping):
            raise CheckpointError(f"{where}: 'calibration' must be an object with 'offsets' per category, not {value!r}")
        offsets = []
        for category, offset in value["offsets"].items():
            if (not isinstance(category, str) or isinstance(offset, bool) or not isinstance(offset, (int, float))
                    or not math.isfinite(offset) or abs(offset) > MAX_OFFSET):
                raise CheckpointError(
                    f"{where}: calibration offset of {category!r} must be a number within ±{MAX_OFFSET}, not {offset!r}"
                )
            offsets.append((category, float(offset)))
        fitted_on = value.get("fitted_on", "")
        if not isinstance(fitted_on, str):
            raise CheckpointError(f"{where}: calibration.fitted_on must be a string, not {fitted_on!r}")
        return cls(tuple(sorted(offsets)), fitted_on)

    def to_dict(self) -> Dict[str, Any]:
        return {"offsets": dict(self.offsets), "fitted_on": self.fitted_on}

    def offset(self, category: Optional[str]) -> float:
        """The logit offset of ``category`` (0 for None or a category without one)."""
        return dict(self.offsets).get(category, 0.0) if category else 0.0

    def offset_for(self, categories: Sequence[str]) -> float:
        """The offset of an expression understood as ``categories`` (its first: the object it asks for)."""
        return self.offset(categories[0]) if categories else 0.0

    def raw_threshold(self, category: Optional[str], threshold: float = 0.5) -> float:
        """The model's own probability at which ``category`` is marked under ``threshold``."""
        return raw_threshold(threshold, self.offset(category))


def calibration_text(categories: Sequence[str], offset: float, marked_from: float) -> str:
    """"; calibrated: vegetation marked from the model's 0.22" for the run's plan line (empty
    when the expression's probabilities are not moved)."""
    if not offset or not categories:
        return ""
    return f"; calibrated: {categories[0]} marked from the model's {marked_from:.2f}"


def threshold_logit(threshold: float) -> float:
    """``logit(threshold)``, the threshold kept inside (0, 1)."""
    t = min(max(float(threshold), 1e-6), 1 - 1e-6)
    return math.log(t / (1 - t))


def raw_threshold(threshold: float, offset: float) -> float:
    """The model's own probability ``p`` with ``sigmoid(logit(p) + offset) == threshold``."""
    return 1.0 / (1.0 + math.exp(offset - threshold_logit(threshold)))
