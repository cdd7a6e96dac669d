"""What a model understands an expression as: the categories it names, the nearest phrasings the
model was trained on (by the model's own text-encoder embedding), and a warning when it is far
from all of them.

A category counts as named when one of its phrasings occurs word for word in the expression
(plurals folded: "buildings" names building) or, failing that, when its nearest phrasing is at
least :data:`SIMILARITY_THRESHOLD` similar (cosine of mean-pooled sentence embeddings). On the
shipped default (MiniLM-L6) "houses" is 0.60 from "building", "trees" 0.59 from "vegetation",
while "swimming pool" is 0.48 from "water" and "airplane" 0.35 from "road".

What the model cannot have used is said too. The sentence embedding takes in every word, so
similarity cannot tell: "in the parking area" is 0.66 from "next to the car". Words decide
instead. A prepositional phrase ("in the parking area", "on the street") that no training
expression holds word for word, and a word no training expression holds next to a category named
word for word ("school" in "yellow school bus"), are *ignored parts*: the model learned nothing
they could change. Where the category itself comes from similarity ("automobiles"), its words
are what was understood. The training expressions' words and prepositional phrases are the
checkpoint's ``lexicon`` and ``phrases``; for older checkpoints, those of their phrasings.
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
    ignored: Tuple[str, ...] = ()  # parts the model learned nothing about (module docstring)

    @property
    def ignored_text(self) -> str:
        """"'in the parking area' is not understood and was ignored" (empty when nothing was)."""
        if not self.ignored:
            return ""
        parts = " and ".join(f"'{part}'" for part in self.ignored)
        return f"{parts} {'is' if len(self.ignored) == 1 else 'are'} not understood and {'was' if len(self.ignored) == 1 else 'were'} ignored"

    @property
    def message(self) -> str:
        """One line for the user: "understood as ..." or a warning."""
        near = ", ".join(
            f"'{n.phrasing}' {n.similarity:.2f}" if n.similarity is not None else f"'{n.phrasing}'" for n in self.nearest
        )
        if self.known:
            named = ", ".join(self.categories) or ", ".join(self.matched)
            said = "nearest" if any(n.similarity is not None for n in self.nearest) else "from"
            line = f"'{self.expression}' understood as {named}" + (f" ({said}: {near})" if near else "")
            return line + (f"; {self.ignored_text}" if self.ignored else "")
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
            "ignored": list(self.ignored),
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
    return list(_folded_words(text))


@functools.lru_cache(maxsize=8192)  # each run folds every known phrasing of the checkpoint again (~700)
def _folded_words(text: str) -> Tuple[str, ...]:
    return tuple(_singular(w) for w in re.findall(r"[a-z0-9]+", text.lower()))


def _find(part: Sequence[str], whole: Sequence[str]) -> int:
    """Index of the word sequence ``part`` in ``whole``, -1 if absent."""
    n = len(part)
    return next((i for i in range(len(whole) - n + 1) if n and list(whole[i : i + n]) == list(part)), -1)


def _occurs(part: Sequence[str], whole: Sequence[str]) -> bool:
    return _find(part, whole) >= 0


#: words that open a prepositional phrase
PREPOSITIONS = frozenset({
    "in", "on", "at", "near", "next", "by", "along", "alongside", "beside", "behind", "between", "among", "amongst",
    "around", "under", "over", "inside", "outside", "across", "from", "with", "without", "within", "into", "onto",
    "toward", "towards", "opposite", "above", "below", "beyond", "past", "through", "against", "off", "upon",
    "close", "adjacent", "surrounded", "enclosed", "lining", "facing", "front",
})
#: determiners: free inside a phrase whose other words are all known
DETERMINERS = frozenset({"a", "an", "the", "all", "every", "each", "any", "some", "its", "their", "this", "that",
                         "these", "those"})
#: words that carry no content of their own (never "not understood" by themselves)
FUNCTION_WORDS = frozenset({
    "a", "an", "the", "all", "every", "each", "any", "some", "of", "to", "and", "or", "its", "their", "this", "that",
    "these", "those", "there", "here", "which", "what", "is", "are", "be", "me", "i", "you", "we", "please", "can",
    "could", "would", "show", "find", "highlight", "segment", "outline", "mark", "where", "need", "want", "looking",
    "for", "am", "image", "picture", "photo", "scene", "one", "ones", "it", "them", "part", "side",
}) | PREPOSITIONS


def phrase_spans(found: Sequence[str]) -> List[Tuple[int, int]]:
    """``(start, end)`` of each prepositional phrase: a preposition and what follows it up to the
    next preposition (so "next to the bus" and "in the parking area" are one each)."""
    starts = [i for i, w in enumerate(found) if w in PREPOSITIONS and (i == 0 or found[i - 1] not in PREPOSITIONS)]
    return [(a, b) for a, b in zip(starts, starts[1:] + [len(found)])]


def prepositional_phrases(text: str) -> List[str]:
    """The prepositional phrases of ``text`` (words folded), for a checkpoint's ``phrases``."""
    found = words(text)
    return [" ".join(found[a:b]) for a, b in phrase_spans(found)]


def _covered(knowledge: "ModelKnowledge", found: Sequence[str]) -> List[bool]:
    """Which words a known phrasing covers word for word."""
    covered = [False] * len(found)
    for phrasing, _ in knowledge.known_phrasings():
        part = words(phrasing)
        n = len(part)
        for i in range(len(found) - n + 1):
            if n and list(found[i : i + n]) == part:
                covered[i : i + n] = [True] * n
    return covered


def ignored_spans(knowledge: "ModelKnowledge", text: str, named_by_words: bool) -> List[Tuple[int, int]]:
    """``(start, end)`` word ranges of ``text`` the model learned nothing about (module docstring)."""
    found = words(text)
    phrasings = [p for p, _ in knowledge.known_phrasings()]
    lexicon = set(knowledge.lexicon) or {w for p in phrasings for w in words(p)}
    known_phrases = set(knowledge.phrases) or {q for p in phrasings for q in prepositional_phrases(p)}
    covered = _covered(knowledge, found)
    spans = phrase_spans(found)
    ignored: List[Tuple[int, int]] = []
    in_phrase = [False] * len(found)
    for a, b in spans:
        in_phrase[a:b] = [True] * (b - a)
        phrase = " ".join(found[a:b])
        # known as a whole, or every word (but determiners) inside a known phrasing ("next to" +
        # "building"): the preposition itself must be known, "on the street" is not "street"
        known_words = all(covered[i] or found[i] in DETERMINERS for i in range(a, b))
        if known_words or phrase in known_phrases or all(w in FUNCTION_WORDS for w in found[a:b]):
            continue
        ignored.append((a, b))
    if named_by_words:  # the category came from its own words: any other unknown word is extra
        for i, word in enumerate(found):
            if not in_phrase[i] and not covered[i] and word not in FUNCTION_WORDS and word not in lexicon:
                ignored.append((i, i + 1))
    return sorted(ignored)


def quote_spans(text: str, spans: Sequence[Tuple[int, int]]) -> Tuple[str, ...]:
    """The words of each span as typed (``words`` folds plurals, one folded word per typed one)."""
    display = re.findall(r"[a-z0-9]+", text.lower())
    return tuple(" ".join(display[a:b]) for a, b in spans)


def _match_positions(knowledge: "ModelKnowledge", text: str) -> List[Tuple[int, int, Optional[str]]]:
    """``(start, end, category)`` of every word-for-word occurrence of a known phrasing."""
    found = words(text)
    out = []
    for phrasing, category in knowledge.known_phrasings():
        part = words(phrasing)
        n = len(part)
        out += [(i, i + n, category) for i in range(len(found) - n + 1) if n and list(found[i : i + n]) == part]
    return out


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
    spans = ignored_spans(knowledge, text, any(c is not None for _, c in hits)) if known else []
    if spans:  # a category named only inside an ignored part ("on the street") is not understood either
        inside = lambda a, b: any(x <= a and b <= y for x, y in spans)  # noqa: E731
        kept = {c for a, b, c in _match_positions(knowledge, text) if c is not None and not inside(a, b)}
        categories = [c for c in categories if c in kept or c not in {c2 for _, c2 in hits}]
        is_known = is_known and bool(categories) if knowledge.categories else is_known
    return Explanation(
        text, tuple(categories), tuple(p for p, _ in matched), tuple(nearest), is_known, threshold, quote_spans(text, spans)
    )


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
