"""Which category an expression is about, for per-category IoU (BTDNet Tables III/IV).

RRSIS-D stores the category with each referred object. A RefSegRS-format dataset only has the
expression, so the category is looked up in a vocabulary: the category phrase that starts
*earliest* in the expression, the longest one among those starting at the same word. The
earliest phrase is the head noun of the templates ("car on the road" is about cars, "low
vegetation surrounded by building" about low vegetation); preferring the longest at one position
keeps "road marking" from being counted as "road". A dataset built by our builder records the
category of each of its expressions in ``stats.json``; that record wins over the lookup.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

from .stats import category_vocabulary, read_stats

#: RefSegRS Table III (Yuan et al., TGRS 2024): the 14 categories of its expressions
REFSEGRS_CATEGORIES = (
    "road",
    "vehicle",
    "car",
    "van",
    "building",
    "truck",
    "trailer",
    "bus",
    "road marking",
    "bikeway",
    "sidewalk",
    "tree",
    "low vegetation",
    "impervious surface",
)

#: group of an expression that names none of the vocabulary
OTHER = "other"


class CategoryMatcher:
    """Find the category phrase of an expression (see module docstring)."""

    def __init__(self, vocabulary: Iterable[str]):
        self.vocabulary: List[str] = []
        for phrase in vocabulary:
            cleaned = " ".join(str(phrase).lower().split())
            if cleaned and cleaned not in self.vocabulary:
                self.vocabulary.append(cleaned)
        if not self.vocabulary:
            raise ValueError("the category vocabulary is empty")
        # whole words only, a plural "s"/"es" allowed, any run of spaces/hyphens between words
        self._patterns = [
            (phrase, re.compile(r"\b" + r"[\s\-]+".join(map(re.escape, phrase.split())) + r"(?:e?s)?\b"))
            for phrase in self.vocabulary
        ]

    def __call__(self, expression: str) -> str:
        text = expression.lower()
        best: Optional[tuple] = None  # (start, -length, phrase)
        for phrase, pattern in self._patterns:
            found = pattern.search(text)
            if found:
                key = (found.start(), -(found.end() - found.start()), phrase)
                if best is None or key < best:
                    best = key
        return best[2] if best else OTHER


def resolve_vocabulary(root: Path, override: Optional[Sequence[str]] = None) -> List[str]:
    """``override`` if given, else the dataset's ``stats.json`` categories, else RefSegRS Table III."""
    if override:
        return [str(c) for c in override]
    return category_vocabulary(read_stats(root)) or list(REFSEGRS_CATEGORIES)
