"""What the model cannot have used is said: parts of an expression no training expression holds.

A test checkpoint that lists its training words (``lexicon``) and prepositional phrases
(``phrases``) as training writes them, and the shipped default, whose older config falls back
on its phrasings."""

from __future__ import annotations

from pathlib import Path

import pytest

import rrsis_geo
from rrsis_geo.cli import main
from rrsis_geo.understanding import phrase_spans, prepositional_phrases, words

from geo_testdata import make_checkpoint, red_square_scene, write_geotiff

REPO = Path(__file__).resolve().parents[2]
DEFAULT = REPO / "resources" / "models" / "default"

PHRASINGS = {"car": ["car", "cars", "light-duty vehicle"], "road": ["road", "street"], "bus": ["bus"]}
LEXICON = sorted({"car", "light", "duty", "vehicle", "road", "street", "bus", "red", "the", "in", "a", "row",
                  "along", "next", "to", "image", "all", "find"})
PHRASES = ["along the road", "in a row", "in the image", "next to the bus"]


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory, tokenizer):
    ckpt = make_checkpoint(tmp_path_factory.mktemp("ckpt") / "words", "test-red", tokenizer, gsd_m=0.2,
                           phrasings=PHRASINGS, vocabulary=["red", "in a row", "next to the bus"],
                           lexicon=LEXICON, phrases=PHRASES)
    return rrsis_geo.load_model(ckpt, device="cpu")


def test_prepositional_phrases_run_to_the_next_preposition():
    assert prepositional_phrases("light-duty vehicles in the parking area") == ["in the parking area"]
    assert prepositional_phrases("cars next to the bus in the image") == ["next to the bus", "in the image"]
    assert prepositional_phrases("vegetation surrounded by buildings") == ["surrounded by building"]
    assert phrase_spans(words("red cars")) == []


@pytest.mark.parametrize("expression, ignored, categories", [
    ("light-duty vehicle in the parking area", ("in the parking area",), ("car",)),
    ("cars on the street", ("on the street",), ("car",)),  # 'street' names road only inside the ignored part
    ("cars along the road", (), ("car", "road")),
    ("red cars in a row", (), ("car",)),
    ("yellow school bus", ("yellow", "school"), ("bus",)),
    ("find all the cars in the image", (), ("car",)),
])
def test_parts_no_training_expression_holds_are_named(segmenter, expression, ignored, categories):
    explanation = rrsis_geo.explain(expression, segmenter=segmenter)
    assert explanation.ignored == ignored
    assert set(explanation.categories) == set(categories)
    assert explanation.to_dict()["ignored"] == list(ignored)
    if ignored:
        quoted = " and ".join(f"'{part}'" for part in ignored)
        assert explanation.message.endswith(f"; {quoted} {'is' if len(ignored) == 1 else 'are'} not understood and "
                                            f"{'was' if len(ignored) == 1 else 'were'} ignored")
    else:
        assert "ignored" not in explanation.message


def test_strict_vocabulary_refuses_an_ignored_part_and_the_warning_says_it(tmp_path, segmenter, capsys):
    scene = write_geotiff(tmp_path / "s.tif", red_square_scene(64, 64, slice(0, 9), slice(0, 9)), res=0.2)
    args = ["predict", str(scene), "-e", "light-duty vehicle in the parking area", "-o", str(tmp_path / "o.gpkg"),
            "--checkpoint", str(segmenter.checkpoint)]
    assert main(args + ["--strict-vocabulary"]) == 2
    _, err = capsys.readouterr()
    assert err == ("rrsis-geo: error: in 'light-duty vehicle in the parking area', 'in the parking area' is not "
                   "understood by this model (refused by --strict-vocabulary)\n")
    assert not (tmp_path / "o.gpkg").exists()
    assert main(args) == 0
    out, _ = capsys.readouterr()
    assert "'in the parking area' is not understood and was ignored" in out


@pytest.mark.slow
def test_the_default_model_says_it_knows_no_parking_area():
    seg = rrsis_geo.load_model(DEFAULT, device="cpu")
    explanation = rrsis_geo.explain("light-duty vehicle in the parking area", segmenter=seg)
    assert explanation.ignored == ("in the parking area",)
    assert "light-duty vehicle" in explanation.categories
    assert rrsis_geo.explain("automobiles", segmenter=seg).ignored == ()  # understood through similarity
    assert rrsis_geo.explain("building along the road", segmenter=seg).ignored == ()
