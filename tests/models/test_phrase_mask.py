"""Key-object-phrase masking rules (BTDNet), on a table of expressions, with the real tokenizer."""

from __future__ import annotations

import pytest
import torch

from rrsis_geo.errors import CheckpointError
from rrsis_geo.models.phrase_mask import KeyPhraseMasker, pluralize
from rrsis_geo.models.presets import preset
from rrsis_geo.models.tokenizer import tokenize
from rrsis_geo.models.vocabulary import ALL_CATEGORIES

TABLE = [
    # category at the end of the first noun phrase; attributes stay
    ("light-duty vehicle in the parking area", "vehicle"),
    ("paved road", "road"),
    ("heavy-duty trucks driving on the road", "trucks"),
    # multi-word categories, split words
    ("road marking", "road marking"),
    ("low vegetation surrounded by building", "low vegetation"),
    ("impervious surface", "impervious surface"),
    ("bikeway along the road", "bikeway"),
    ("The ground track field is at the top", "ground track field"),
    ("a storage tank in the middle of the image", "storage tank"),
    # only the first noun phrase counts
    ("building along the road", "building"),
    ("car in the parking lot", "car"),
    ("parking lot with cars", "parking lot"),
    ("buses and vans", "buses"),
    # no category: head noun = last ordinary word of the noun phrase
    ("the gray one on the left", "one"),
    ("the big white thing", "thing"),
    # leading prepositional phrase before a comma
    ("in the middle, a white ship", "ship"),
    # no noun phrase before the first relation: first category anywhere
    ("on the left the harbor", "harbor"),
]


#: the paper's scope (``btdnet.key_phrase: noun_phrase``): the whole noun phrase, modifiers kept
NOUN_PHRASES = [
    ("light-duty vehicle in the parking area", "light - duty vehicle"),
    ("paved road", "paved road"),
    ("the gray one on the left", "gray one"),
    ("a white storage tank next to the road", "white storage tank"),
    ("two airplanes parked at the airport", "airplanes"),
    ("in the middle, a white ship", "white ship"),
    ("on the left the harbor", "harbor"),  # no noun phrase before the relation: the first category
    ("the", ""),
]


def masked_text(tokenizer, masker, expression):
    enc = tokenize(tokenizer, [expression], 20)
    mask = masker(enc.input_ids, enc.attention_mask)[0]
    return tokenizer.decode(enc.input_ids[0][mask])


@pytest.fixture(scope="module")
def masker(tokenizer):
    module = KeyPhraseMasker(len(tokenizer), len(ALL_CATEGORIES))
    module.fill(tokenizer, ALL_CATEGORIES)
    return module


@pytest.mark.parametrize("expression, key", TABLE)
def test_rules(expression, key, tokenizer, masker):
    assert masked_text(tokenizer, masker, expression) == key


@pytest.mark.parametrize("expression, phrase", NOUN_PHRASES)
def test_noun_phrase_scope(expression, phrase, tokenizer):
    module = KeyPhraseMasker(len(tokenizer), len(ALL_CATEGORIES), "noun_phrase")
    module.fill(tokenizer, ALL_CATEGORIES)
    assert masked_text(tokenizer, module, expression) == phrase


def test_the_paper_presets_mask_noun_phrases_and_old_configs_categories(build):
    assert preset("btdnet-swinb-bert")["btdnet"]["key_phrase"] == "noun_phrase"
    config = preset("tiny-btdnet")
    del config["btdnet"]["key_phrase"]  # a checkpoint from before the setting existed
    assert build(config).phrase_masker.scope == "category"
    with pytest.raises(CheckpointError, match="btdnet.key_phrase"):
        KeyPhraseMasker(10, 1, "words")


def test_padding_and_special_tokens_are_never_masked(tokenizer, masker):
    enc = tokenize(tokenizer, ["the"], 20)  # nothing to mask at all
    assert not masker(enc.input_ids, enc.attention_mask).any()
    enc = tokenize(tokenizer, ["vehicle"], 20)
    garbage = enc.input_ids.clone()
    garbage[enc.attention_mask == 0] = tokenizer.convert_tokens_to_ids("road")
    assert torch.equal(masker(garbage, enc.attention_mask), masker(enc.input_ids, enc.attention_mask))
    assert masker(enc.input_ids, enc.attention_mask).sum() == 1


def test_plurals():
    assert [pluralize(w) for w in ("bus", "storage tank", "harbor", "ferry", "bay", "box")] == [
        "buses", "storage tanks", "harbors", "ferries", "bays", "boxes",
    ]


def test_unfilled_rules_fail_clearly(build, tmp_path, tokens):
    config = preset("tiny-btdnet")
    config["text"]["tokenizer"] = str(tmp_path / "missing")
    model = build(config)
    with pytest.raises(CheckpointError, match="key-phrase rules"):
        model.encode_text(tokens.input_ids, tokens.attention_mask)
