"""The ``language`` config section: words (LAVT) or slots made from the sentence embedding."""

from __future__ import annotations

import pytest
import torch

from rrsis_geo.errors import CheckpointError
from rrsis_geo.models.language import SentenceSlots, build_language, sentence_embedding
from rrsis_geo.models.presets import preset
from rrsis_geo.models.registry import build_model


def _tiny_lgce(language=None):
    config = preset("tiny-lgce")
    if language is not None:
        config["language"] = language
    torch.manual_seed(0)
    return build_model(config)


def test_absent_section_keeps_the_word_layout():
    words = _tiny_lgce()
    explicit = _tiny_lgce({"tokens": "words"})
    assert words.language is None and explicit.language is None
    assert set(words.state_dict()) == set(explicit.state_dict())
    assert not any(key.startswith("language.") for key in words.state_dict())


def test_sentence_embedding_ignores_padding_and_is_unit_length():
    words = torch.randn(2, 6, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]])
    padded = words.clone()
    padded[0, 3:] = 100.0  # whatever the padding holds
    a, b = sentence_embedding(words, mask), sentence_embedding(padded, mask)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(a[0], torch.nn.functional.normalize(words[0, :3].mean(0), dim=0))


def test_slots_depend_on_the_sentence_only():
    slots = SentenceSlots(8, slots=3).eval()
    words = torch.randn(1, 4, 8)
    mask = torch.ones(1, 4, dtype=torch.long)
    # the same mean in other words, and scaled: the same sentence embedding, the same state
    other = torch.cat([words * 2.0, words.mean(1, keepdim=True) * 2.0], 1)
    state, same = slots(words, mask), slots(other, torch.ones(1, 5, dtype=torch.long))
    assert state["words"].shape == (1, 3, 8) and state["mask"].tolist() == [[1, 1, 1]]
    torch.testing.assert_close(state["words"], same["words"])
    torch.testing.assert_close(state["sentence"], same["sentence"])


def test_noise_only_while_training():
    slots = SentenceSlots(16, slots=2, noise=0.5)
    words, mask = torch.randn(2, 5, 16), torch.ones(2, 5, dtype=torch.long)
    slots.eval()
    torch.testing.assert_close(slots(words, mask)["words"], slots(words, mask)["words"])
    slots.train()
    torch.manual_seed(1)
    noisy = slots(words, mask)["sentence"]
    clean = sentence_embedding(words, mask) * 4.0
    cosine = torch.nn.functional.cosine_similarity(noisy, clean, dim=-1)
    assert (cosine < 0.999).all() and (cosine > 0.6).all()


def test_sentence_model_trains_and_ignores_padding():
    model = _tiny_lgce({"tokens": "sentence", "slots": 4, "noise": 0.3})
    ids = torch.randint(1, 100, (2, 7))
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 4:] = 0
    images = torch.randn(2, 3, 64, 64)
    model.train()
    model(images, ids, mask).sum().backward()
    assert model.language.expand.weight.grad.abs().sum() > 0
    model.eval()
    other = ids.clone()
    other[1, 5:] = 3
    with torch.no_grad():
        torch.testing.assert_close(model(images, ids, mask), model(images, other, mask))


@pytest.mark.parametrize(
    "settings, message",
    [({"tokens": "phrases"}, "language section field 'tokens'"), ({"tokens": "sentence", "slots": 1}, "at least 2"),
     ({"tokens": "sentence", "noise": -1}, "between 0 and 2")],
)
def test_bad_language_settings_are_checkpoint_errors(settings, message):
    with pytest.raises(CheckpointError, match=message):
        build_language(settings, 8)
