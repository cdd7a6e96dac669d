"""A paraphrase grammar: the ways people say a category, an attribute and a relation, and the
whole phrasings they make, with a held-out part that training never sees.

A *referent* is what an expression means — category, attributes, relation — and its mask; the
builder decides it from the labels. The grammar (``configs/grammar.yaml``) renders a referent
into phrasings: nouns (synonyms, singular / plural by the number of instances, mass nouns),
attribute words before the noun or phrases after it, relations after the noun or as a
compound before it ("roadside buildings"), wrapped in frames ("the {np}", "all {np}", "show me
the {np}", …). A phrasing is *held out* when a seeded hash of its whole text falls in the
configured share, or when it contains a held-out word; the canonical phrasing (the category,
attribute and relation words as the class mapping names them) is never held out.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from rrsis_geo.errors import InputError


@dataclass(frozen=True)
class Referent:
    """What an expression means: category, attribute words (0–2), relation phrase, and how many
    instances it covers (singular or plural nouns)."""

    category: str
    attributes: tuple[str, ...] = ()
    relation: str | None = None
    count: int = 1
    extent_m2: float | None = None  # largest instance's area; None: unknown (cut by the crop edge)

    @property
    def canonical(self) -> str:
        """The class mapping's own words, as the single-phrasing builder wrote them."""
        return " ".join([*self.attributes, self.category, *([self.relation] if self.relation else [])])

    @property
    def template(self) -> str:
        parts = ["attribute"] * len(self.attributes) + ["category"]
        if self.relation:
            parts.append("relation")
        return "_".join(parts)


@dataclass(frozen=True)
class Noun:
    singular: str
    plural: str | None  # None: a mass noun ("water", "vegetation")
    max_area_m2: float | None = None  # only for instances up to this size ("pool", "villa")

    def fits(self, extent_m2: float | None) -> bool:
        return self.max_area_m2 is None or (extent_m2 is not None and extent_m2 <= self.max_area_m2)

    @property
    def plural_only(self) -> bool:  # "trees", "plants": plural whatever the count
        return not self.singular

    def form(self, count: int) -> str:
        return self.plural if (count > 1 or self.plural_only) and self.plural else self.singular


@dataclass(frozen=True)
class Modifier:
    """An attribute or relation: words before the noun, phrases after it."""

    pre: tuple[str, ...] = ()
    post: tuple[str, ...] = ()


@dataclass(frozen=True)
class Grammar:
    """The parsed grammar file."""

    nouns: Mapping[str, tuple[Noun, ...]]
    attributes: Mapping[str, Modifier]
    relations: Mapping[str, Modifier]
    frames_any: tuple[str, ...]
    frames_singular: tuple[str, ...]
    frames_plural: tuple[str, ...]
    heldout_share: float
    heldout_seed: int
    heldout_words: tuple[str, ...]
    source: str = "<memory>"
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def is_heldout(self, text: str, canonical: str | None = None) -> bool:
        """Whether the whole phrasing ``text`` is held out of training."""
        if canonical is not None and text == canonical:
            return False
        return _heldout(text, self.heldout_share, self.heldout_seed, self.heldout_words)

    def phrasings(self, referent: Referent) -> tuple[str, ...]:
        """Every phrasing of ``referent`` (deduplicated, canonical first)."""
        nouns = self.nouns.get(referent.category, ())
        key = (referent.category, referent.attributes, referent.relation, referent.count > 1,
               tuple(n.fits(referent.extent_m2) for n in nouns))
        if key not in self._cache:
            self._cache[key] = tuple(dict.fromkeys([self.canonical(referent), *self._render(referent)]))
        return self._cache[key]

    def canonical(self, referent: Referent) -> str:
        """The plainest phrasing: the category word, attribute words that go before a noun
        before it (others as their first phrase after it), then the relation phrase."""
        pre, post = [], []
        for word in referent.attributes:
            mod = self.attributes.get(word)
            if mod is None or word in mod.pre or not mod.post:
                pre.append(word)
            else:
                post.append(mod.post[0])
        text = " ".join([*pre, referent.category, *post, *([referent.relation] if referent.relation else [])])
        return text

    def split_phrasings(self, referent: Referent) -> tuple[list[str], list[str]]:
        """(seen, held-out) phrasings of ``referent``."""
        seen, heldout = [], []
        for text in self.phrasings(referent):
            (heldout if self.is_heldout(text, self.canonical(referent)) else seen).append(text)
        return seen, heldout

    def _render(self, referent: Referent) -> list[str]:
        nouns = self.nouns.get(referent.category)
        if nouns is None:
            raise InputError(f"{self.source}: no nouns for the category {referent.category!r}")
        plural = referent.count > 1
        mods = []
        for word in referent.attributes:
            if word not in self.attributes:
                raise InputError(f"{self.source}: no phrasings for the attribute {word!r}")
            mods.append(self.attributes[word])
        if referent.relation is not None:
            if referent.relation not in self.relations:
                raise InputError(f"{self.source}: no phrasings for the relation {referent.relation!r}")
            mods.append(self.relations[referent.relation])
        out = []
        for noun in (n for n in nouns if n.fits(referent.extent_m2)):
            head = noun.form(referent.count)
            is_plural = (plural or noun.plural_only) and noun.plural is not None
            for np_text in _noun_phrases(head, mods):
                if is_plural:
                    np_text = _pluralise(np_text)
                for frame in self._frames(is_plural, noun.plural is None):
                    out.append(" ".join(frame.replace("{np}", np_text).split()))
        return out

    def _frames(self, plural: bool, mass: bool) -> tuple[str, ...]:
        if plural:
            return self.frames_any + self.frames_plural
        if mass:
            return self.frames_any + tuple(f for f in self.frames_singular if "{np}" in f)
        return self.frames_any + self.frames_singular


_PLURAL = ((" that is ", " that are "), (" on its own", " on their own"), (" by itself", " by themselves"))


def _pluralise(text: str) -> str:
    """Agreement of the phrases after a plural noun ("cars that are white")."""
    text = f" {text} "
    for singular, plural in _PLURAL:
        text = text.replace(singular, plural)
    return text.strip()


def _noun_phrases(head: str, mods: Sequence[Modifier]) -> list[str]:
    """Each modifier goes before the noun (a word) or after it (a phrase); phrases after the
    noun keep the modifiers' order ("white car on the left next to the bus")."""
    choices = []
    for mod in mods:
        choices.append([("pre", w) for w in mod.pre] + [("post", p) for p in mod.post])
    phrases = []
    for combo in itertools.product(*choices) if choices else [()]:
        pre = [w for kind, w in combo if kind == "pre"]
        post = [p for kind, p in combo if kind == "post"]
        phrases.append(" ".join([*pre, head, *post]))
    return phrases


@lru_cache(maxsize=200_000)
def _heldout(text: str, share: float, seed: int, words: tuple[str, ...]) -> bool:
    padded = f" {text} "
    if any(f" {w} " in padded for w in words):
        return True
    digest = hashlib.sha256(f"{seed}:{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64 < share


# ----------------------------------------------------------------------------------------- loading
_WORDS_RE = re.compile(r"^[a-z0-9{/][a-z0-9 ,'/\-{}]*$")


def load_grammar(path: str | Path) -> Grammar:
    """Read and check a grammar file (see ``configs/grammar.yaml``)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"grammar {path} cannot be read: {exc}") from None
    return parse_grammar(data, str(path))


def _strings(value: Any, where: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) and _WORDS_RE.match(v) for v in items):
        raise InputError(f"{where}: expected lower-case words or a list of them, got {value!r}")
    return tuple(" ".join(v.split()) for v in items)


def _modifiers(raw: Any, where: str) -> dict[str, Modifier]:
    if not isinstance(raw, Mapping):
        raise InputError(f"{where}: expected a mapping of word -> {{pre: [...], post: [...]}}")
    out = {}
    for word, spec in raw.items():
        if not isinstance(spec, Mapping) or set(spec) - {"pre", "post"} or not spec:
            raise InputError(f"{where}.{word}: give 'pre' (before the noun) and/or 'post' (after it)")
        out[str(word)] = Modifier(pre=_strings(spec.get("pre", []), f"{where}.{word}.pre"),
                                  post=_strings(spec.get("post", []), f"{where}.{word}.post"))
    return out


def parse_grammar(data: Any, source: str = "<memory>") -> Grammar:
    """Validate a parsed grammar mapping."""
    if not isinstance(data, Mapping) or not {"nouns", "frames"} <= set(data):
        raise InputError(f"{source}: a grammar needs 'nouns' and 'frames' (and usually "
                         "'attributes', 'relations', 'heldout')")
    unknown = set(data) - {"nouns", "attributes", "relations", "frames", "heldout"}
    if unknown:
        raise InputError(f"{source}: unknown key(s) {sorted(unknown)}")
    nouns: dict[str, tuple[Noun, ...]] = {}
    for category, forms in (data["nouns"] or {}).items():
        entries = []
        for item in forms if isinstance(forms, list) else [forms]:
            where = f"{source}: nouns.{category}"
            limit = None
            if isinstance(item, Mapping):  # {form: "pool/pools", max_area_m2: 2500}
                limit = item.get("max_area_m2")
                if set(item) - {"form", "max_area_m2"} or not isinstance(limit, (int, float)) or limit <= 0:
                    raise InputError(f"{where}: {item!r} needs 'form' and a 'max_area_m2' > 0")
                item = item.get("form")
            (form,) = _strings(item, where)
            singular, _, plural = form.partition("/")
            entries.append(Noun(singular.strip(), plural.strip() or None,
                                None if limit is None else float(limit)))
        nouns[str(category)] = tuple(entries)
    frames = data["frames"]
    if not isinstance(frames, Mapping) or not frames.get("any"):
        raise InputError(f"{source}: frames needs 'any' (and 'singular', 'plural') lists with {{np}}")
    parsed = {k: _strings(frames.get(k, []), f"{source}: frames.{k}") for k in ("any", "singular", "plural")}
    for k, items in parsed.items():
        if any("{np}" not in f for f in items):
            raise InputError(f"{source}: every frame in frames.{k} needs {{np}}")
    heldout = data.get("heldout") or {}
    words = _strings(heldout.get("words", []), f"{source}: heldout.words")
    # a held-out noun is held out in the plural too
    words += tuple(n.plural for forms in nouns.values() for n in forms if n.singular in words and n.plural)
    share = heldout.get("share", 0.0)
    if not isinstance(share, (int, float)) or not 0 <= share < 1:
        raise InputError(f"{source}: heldout.share must be a share in 0..1 (excluded)")
    seed = heldout.get("seed", 0)
    if not isinstance(seed, int):
        raise InputError(f"{source}: heldout.seed must be an integer")
    return Grammar(
        nouns=nouns,
        attributes=_modifiers(data.get("attributes") or {}, f"{source}: attributes"),
        relations=_modifiers(data.get("relations") or {}, f"{source}: relations"),
        frames_any=parsed["any"], frames_singular=parsed["singular"], frames_plural=parsed["plural"],
        heldout_share=float(share), heldout_seed=seed,
        heldout_words=words, source=source,
    )
