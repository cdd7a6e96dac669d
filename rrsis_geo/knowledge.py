"""What a checkpoint knows: the scale and the words it learned (``config.json`` keys).

::

    "gsd_m": 1.5,                       # the scale of expressions that name no known category
    "scales": {                         # optional: where each category was learned (m/px)
      "building": {"gsd_m": 1.2, "min": 1.0, "max": 1.5},
      "car":      {"gsd_m": 0.1, "min": 0.06, "max": 0.13}
    },
    "phrasings": {                      # optional: the phrasings trained for each category
      "building": ["building", "house", "villa"],
      "car": ["car", "vehicle", "light-duty vehicle"]
    }

``gsd_m`` of a category is the ground sample distance its expressions are run at; ``min``/``max``
(default: ``gsd_m``) the range its training crops covered. A checkpoint without ``scales`` runs
every expression at its single ``gsd_m`` (as every checkpoint did before); one without ``gsd_m``
at all runs at the scene's own GSD. Without ``phrasings`` the categories are the ``vocabulary``
entries that are known category words (:data:`~rrsis_geo.models.vocabulary.ALL_CATEGORIES`),
each phrased by itself.

Outside :mod:`rrsis_geo.models` and free of torch, so that a scene can be refused for its GSD
before torch is imported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .errors import CheckpointError

_SCALE_KEYS = {"gsd_m", "min", "max"}


@dataclass(frozen=True)
class CategoryScale:
    """The ground sample distance a category runs at, and the range it was learned over (m/px)."""

    category: str
    gsd_m: float
    min_m: float
    max_m: float

    def to_dict(self) -> Dict[str, Any]:
        return {"category": self.category, "gsd_m": self.gsd_m, "min": self.min_m, "max": self.max_m}


@dataclass(frozen=True)
class ModelKnowledge:
    """Categories, their phrasings and scales, as read from a checkpoint's config."""

    default_gsd_m: Optional[float]
    scales: Dict[str, CategoryScale]
    phrasings: Dict[str, Tuple[str, ...]]  # category -> phrasings
    extra_phrasings: Tuple[str, ...]  # vocabulary entries outside any category (attributes, relations)
    #: every word of the training expressions (plurals folded); empty: unknown (older checkpoints)
    lexicon: Tuple[str, ...] = ()
    #: the prepositional phrases of the training expressions ("along the road", "in the image")
    phrases: Tuple[str, ...] = ()

    @property
    def categories(self) -> List[str]:
        return list(self.phrasings)

    @property
    def per_category(self) -> bool:
        """The checkpoint gives categories scales of their own."""
        return bool(self.scales)

    def known_phrasings(self) -> List[Tuple[str, Optional[str]]]:
        """Every known phrasing with its category (None for attributes and relations)."""
        out = [(p, c) for c, ps in self.phrasings.items() for p in ps]
        seen = {p for p, _ in out}
        return out + [(p, None) for p in self.extra_phrasings if p not in seen]

    def scale_of(self, category: Optional[str]) -> Optional[CategoryScale]:
        """The scale a category runs at (the checkpoint's default for None or a category without one)."""
        if category is not None and category in self.scales:
            return self.scales[category]
        if self.default_gsd_m is None:
            return None
        g = self.default_gsd_m
        return CategoryScale(category or "default", g, g, g)

    def to_dict(self) -> Dict[str, Any]:
        """The ``config.json`` keys this knowledge is read from: ``model_knowledge(k.to_dict()) == k``
        (``vocabulary`` holds the phrasings outside any category)."""
        return {
            "gsd_m": self.default_gsd_m,
            "scales": {c: {"gsd_m": s.gsd_m, "min": s.min_m, "max": s.max_m} for c, s in self.scales.items()},
            "phrasings": {c: list(p) for c, p in self.phrasings.items()},
            "vocabulary": list(self.extra_phrasings),
            "lexicon": list(self.lexicon),
            "phrases": list(self.phrases),
        }


def _positive(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise CheckpointError(f"config.json: {where} must be a positive number of metres per pixel, not {value!r}")
    return float(value)


def _parse_scales(raw: Any) -> Dict[str, CategoryScale]:
    if not isinstance(raw, Mapping):
        raise CheckpointError("config.json: 'scales' must map each category to {gsd_m, min, max}")
    out: Dict[str, CategoryScale] = {}
    for category, entry in raw.items():
        if not isinstance(category, str) or not category.strip():
            raise CheckpointError(f"config.json: 'scales' has an empty category name {category!r}")
        if not isinstance(entry, Mapping) or "gsd_m" not in entry or set(entry) - _SCALE_KEYS:
            raise CheckpointError(
                f"config.json: scales[{category!r}] must be {{\"gsd_m\": G, \"min\": LO, \"max\": HI}}, not {entry!r}"
            )
        g = _positive(entry["gsd_m"], f"scales[{category!r}].gsd_m")
        lo = _positive(entry.get("min", g), f"scales[{category!r}].min")
        hi = _positive(entry.get("max", g), f"scales[{category!r}].max")
        if not lo <= g <= hi:
            raise CheckpointError(f"config.json: scales[{category!r}] needs min <= gsd_m <= max, got {lo}, {g}, {hi}")
        out[category] = CategoryScale(category, g, lo, hi)
    return out


def _parse_phrasings(raw: Any) -> Dict[str, Tuple[str, ...]]:
    if not isinstance(raw, Mapping):
        raise CheckpointError("config.json: 'phrasings' must map each category to a list of phrasings")
    out: Dict[str, Tuple[str, ...]] = {}
    for category, items in raw.items():
        if isinstance(items, str) or not isinstance(items, Sequence) or not items:
            raise CheckpointError(f"config.json: phrasings[{category!r}] must be a non-empty list of strings")
        if not all(isinstance(p, str) and p.strip() for p in items):
            raise CheckpointError(f"config.json: phrasings[{category!r}] holds an empty or non-string phrasing")
        out[str(category)] = tuple(" ".join(p.lower().split()) for p in items)
    return out


def model_knowledge(config: Mapping[str, Any]) -> ModelKnowledge:
    """Parse and check ``gsd_m``/``scales``/``phrasings``/``vocabulary`` of a config (see module doc).

    Raises :class:`CheckpointError` naming the first bad entry.
    """
    default = config.get("gsd_m")
    default_gsd = None if default is None else _positive(default, "gsd_m")
    scales = _parse_scales(config["scales"]) if config.get("scales") is not None else {}
    if scales and default_gsd is None:
        raise CheckpointError(
            "config.json: 'scales' needs a top-level gsd_m too (the scale of expressions that name no known category)"
        )
    vocabulary = [" ".join(str(v).lower().split()) for v in config.get("vocabulary") or []]
    if config.get("phrasings") is not None:
        phrasings = _parse_phrasings(config["phrasings"])
    else:
        from .models.vocabulary import ALL_CATEGORIES  # torch-free, like this module

        known = set(ALL_CATEGORIES) | set(scales)
        phrasings = {v: (v,) for v in vocabulary if v in known}
    for category in scales:
        phrasings.setdefault(category, (category.lower(),))
    listed = {p for ps in phrasings.values() for p in ps}
    extra = tuple(v for v in vocabulary if v not in listed)
    lexicon = _string_list(config.get("lexicon"), "lexicon")
    phrases = _string_list(config.get("phrases"), "phrases")
    return ModelKnowledge(default_gsd, scales, phrasings, extra, lexicon, phrases)


def _string_list(raw: Any, key: str) -> Tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str) or not isinstance(raw, Sequence) or not all(isinstance(v, str) and v.strip() for v in raw):
        raise CheckpointError(f"config.json: {key!r} must be a list of non-empty strings")
    return tuple(" ".join(v.lower().split()) for v in raw)


#: phrasings shown per category in the summary (``--verbose``: all)
EXAMPLES = 3


def describe_knowledge(knowledge: ModelKnowledge, verbose: bool = False) -> List[str]:
    """What a model knows, as lines for ``rrsis-geo models`` and ``info``: categories with their
    scales, then per category how many phrasings it learned and a few of them (``verbose``: all)."""

    def scale_text(category: str) -> str:
        s = knowledge.scale_of(category)
        if s is None:
            return "scene GSD"
        learned = "" if s.min_m == s.max_m else f", learned {s.min_m:g}-{s.max_m:g}"
        return f"{s.gsd_m:g} m/px{learned}"

    def phrased(category: str, phrasings: Sequence[str]) -> str:
        if verbose or len(phrasings) <= EXAMPLES:
            return f"{category}: {', '.join(phrasings)}"
        return f"{category} ({len(phrasings)}): {', '.join(phrasings[:EXAMPLES])}, …"

    lines = []
    if knowledge.categories:
        lines.append("categories: " + "; ".join(f"{c} ({scale_text(c)})" for c in knowledge.categories))
        named = [phrased(c, p) for c, p in knowledge.phrasings.items() if p != (c,)]
        if named:
            lines.append("phrasings:  " + "; ".join(named))
    elif knowledge.default_gsd_m is not None:
        lines.append(f"categories: none listed; every expression at {knowledge.default_gsd_m:g} m/px")
    if knowledge.extra_phrasings:
        extra = knowledge.extra_phrasings
        shown = extra if verbose or len(extra) <= 4 * EXAMPLES else extra[: 4 * EXAMPLES]
        more = "" if len(shown) == len(extra) else f", … ({len(extra)} in all)"
        lines.append("other words: " + ", ".join(shown) + more)
    if not verbose:
        total = sum(len(p) for p in knowledge.phrasings.values()) + len(knowledge.extra_phrasings)
        lines.append(f"({total} known phrasings; --verbose lists them all)")
    return lines
