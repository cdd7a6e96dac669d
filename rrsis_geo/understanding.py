"""What a model understands an expression as: the categories it names, the nearest phrasings the
model was trained on (by the model's own text-encoder embedding), and a warning when it is far
from all of them.

A category counts as named when one of its phrasings occurs word for word in the expression
(plurals folded: "buildings" names building) or, failing that, when its nearest phrasing is at
least :data:`SIMILARITY_THRESHOLD` similar (cosine of mean-pooled sentence embeddings). On the
shipped default (MiniLM-L6) "houses" is 0.60 from "building", "trees" 0.59 from "vegetation",
while "swimming pool" is 0.48 from "water" and "airplane" 0.35 from "road".
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

if TYPE_CHECKING:  # pragma: no cover
    from .knowledge import ModelKnowledge
    from .segmenter import Segmenter

#: below this cosine similarity an expression is "far from anything this model learned"
SIMILARITY_THRESHOLD = 0.5


@dataclass(frozen=True)
class Nearest:
    """A known phrasing and how similar the expression is to it (None: no embedding to ask)."""

    phrasing: str
    category: Optional[str]
    similarity: Optional[float]

    def to_dict(self) -> Dict[str, Any]:
        return {"phrasing": self.phrasing, "category": self.category, "similarity": self.similarity}


@dataclass(frozen=True)
class Explanation:
    """How the model reads one expression (see module docstring); ``to_dict()`` is JSON-ready."""

    expression: str
    categories: Tuple[str, ...]  # the categories it names (they decide its scale)
    matched: Tuple[str, ...]  # known phrasings found word for word
    nearest: Tuple[Nearest, ...]  # best first
    known: bool
    threshold: float

    @property
    def message(self) -> str:
        """One line for the user: "understood as ..." or a warning."""
        near = ", ".join(
            f"'{n.phrasing}' {n.similarity:.2f}" if n.similarity is not None else f"'{n.phrasing}'" for n in self.nearest
        )
        if self.known:
            named = ", ".join(self.categories) or ", ".join(self.matched)
            said = "nearest" if any(n.similarity is not None for n in self.nearest) else "from"
            return f"'{self.expression}' understood as {named}" + (f" ({said}: {near})" if near else "")
        if near:
            return f"'{self.expression}' is far from anything this model learned; nearest: {near}"
        return f"'{self.expression}' names nothing this model lists in its vocabulary"

    def to_dict(self) -> Dict[str, Any]:
        return {
            "expression": self.expression,
            "categories": list(self.categories),
            "matched": list(self.matched),
            "nearest": [n.to_dict() for n in self.nearest],
            "known": self.known,
            "threshold": self.threshold,
            "message": self.message,
        }


def _singular(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("ses", "xes", "ches", "shes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def words(text: str) -> List[str]:
    """Lower-case words with plurals folded ("Light-duty vehicles" -> light, duty, vehicle)."""
    return [_singular(w) for w in re.findall(r"[a-z0-9]+", text.lower())]


def _find(part: Sequence[str], whole: Sequence[str]) -> int:
    """Index of the word sequence ``part`` in ``whole``, -1 if absent."""
    n = len(part)
    return next((i for i in range(len(whole) - n + 1) if n and list(whole[i : i + n]) == list(part)), -1)


def _occurs(part: Sequence[str], whole: Sequence[str]) -> bool:
    return _find(part, whole) >= 0


def word_matches(knowledge: "ModelKnowledge", text: str) -> List[Tuple[str, Optional[str]]]:
    """Known phrasings (with their category) that occur word for word in ``text``, in its order."""
    found = words(text)
    hits = sorted((_find(words(p), found), p, c) for p, c in knowledge.known_phrasings() if _occurs(words(p), found))
    return [(p, c) for _, p, c in hits]


def explain_with(
    segmenter: "Segmenter", expression: str, *, top: int = 3, threshold: float = SIMILARITY_THRESHOLD
) -> Explanation:
    """How ``segmenter`` reads ``expression`` (see :class:`Explanation`)."""
    from .models.tokenizer import clean_expression

    text = clean_expression(expression)
    knowledge = segmenter.knowledge
    known = knowledge.known_phrasings()
    hits = word_matches(knowledge, text)
    # every category named counts for the scale, even as the object of a relation ("along the road")
    categories = list(dict.fromkeys(c for _, c in hits if c is not None))
    # for display, a phrasing inside a longer match ("road" in "along the road") adds nothing
    matched = [(p, c) for p, c in hits if not any(p != q and _occurs(words(p), words(q)) for q, _ in hits)]

    nearest: List[Nearest] = []
    embeddings = segmenter.sentence_embeddings([text] + [p for p, _ in known]) if known else None
    if embeddings is not None:
        sims = (embeddings[1:] @ embeddings[0]).tolist()
        # decided on the two decimals the user sees, so that "0.50" never warns at a 0.5 threshold
        ranked = sorted(zip(known, (round(float(x), 2) for x in sims)), key=lambda item: -item[1])
        nearest = [Nearest(p, c, s) for (p, c), s in ranked[:top]]
        best_category = next(((c, s) for (_, c), s in ranked if c is not None), None)
        if not categories and best_category is not None and best_category[1] >= threshold:
            categories = [best_category[0]]
        best_any = ranked[0][1] if ranked else 0.0
    else:
        nearest = [Nearest(p, c, None) for p, c in matched[:top]]
        best_any = 1.0 if matched else 0.0
    if knowledge.categories:
        is_known = bool(categories)
    else:  # nothing to name: any known phrasing close enough will do
        is_known = not known or bool(matched) or best_any >= threshold
    return Explanation(text, tuple(categories), tuple(p for p, _ in matched), tuple(nearest), is_known, threshold)


@functools.lru_cache(maxsize=2)
def _cached_model(checkpoint: Optional[str], device: str) -> "Segmenter":
    from .segmenter import load_model

    return load_model(checkpoint, device)


def explain(
    expression: str,
    *,
    segmenter: Optional["Segmenter"] = None,
    checkpoint: Optional[str] = None,
    device: str = "cpu",
    top: int = 3,
    threshold: float = SIMILARITY_THRESHOLD,
) -> Explanation:
    """What the model (``segmenter``, else ``checkpoint``, else the default) understands ``expression`` as.

    ::

        >>> rrsis_geo.explain("houses").message
        "'houses' understood as building (nearest: 'building' 0.60, ...)"
    """
    if segmenter is None:
        from .catalog import resolve_checkpoint

        segmenter = _cached_model(str(resolve_checkpoint(checkpoint)), device)
    return explain_with(segmenter, expression, top=top, threshold=threshold)
