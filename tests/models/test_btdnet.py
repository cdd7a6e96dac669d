"""BTDNet's training outputs, ablation switches, and its key-phrase rules travelling in the checkpoint."""

from __future__ import annotations

import json

import torch

from rrsis_geo.models import load_checkpoint
from rrsis_geo.models.presets import init_checkpoint, preset


def test_forward_train_outputs(build, make_images, tokens, tokenizer):
    model = build("tiny-btdnet").train()
    out = model.forward_train(make_images(2, 64), tokens.input_ids, tokens.attention_mask)
    assert set(out) == {"logits", "recon_pred", "recon_target", "recon_mask"}  # no extra mask head
    assert out["logits"].shape == (2, 2, 64, 64)
    assert out["recon_pred"].shape == out["recon_target"].shape == (2, 20, 32)
    assert out["recon_mask"].dtype == torch.bool and out["recon_mask"].shape == (2, 20)
    assert out["recon_pred"].requires_grad and not out["recon_target"].requires_grad
    # the paper preset reconstructs every real token of the expression (eq. 13)
    assert torch.equal(out["recon_mask"], tokens.attention_mask.bool())
    phrase = model.encode_text(tokens.input_ids, tokens.attention_mask)["phrase_mask"]
    masked = [tokenizer.convert_ids_to_tokens(ids[m].tolist()) for ids, m in zip(tokens.input_ids, phrase)]
    # the paper's scope (IV-D2 masks noun phrases): the modifiers go with the head word
    assert masked == [["light", "-", "duty", "vehicle"], ["building"]]


def test_legacy_layout_keeps_the_mask_head_and_phrase_reconstruction(build, make_images, tokens):
    config = preset("tiny-btdnet")
    for key in ("mask_head", "bsc_layout", "predictor_layout", "bg_pool_bins", "mci_pixel_attention", "recon_tokens"):
        del config["btdnet"][key]
    model = build(config).train()
    out = model.forward_train(make_images(2, 64), tokens.input_ids, tokens.attention_mask)
    assert set(out) == {"logits", "mask_logits", "recon_pred", "recon_target", "recon_mask"}
    phrase = model.encode_text(tokens.input_ids, tokens.attention_mask)["phrase_mask"]
    assert torch.equal(out["recon_mask"], phrase)


def test_inference_uses_the_fg_bg_predictor(build, make_images, tokens):
    model = build("tiny-btdnet").eval()
    images = make_images(2, 64)
    with torch.no_grad():
        train_out = model.forward_train(images, tokens.input_ids, tokens.attention_mask)
        logits = model(images, tokens.input_ids, tokens.attention_mask)
    torch.testing.assert_close(logits, train_out["logits"])


def test_text_state_holds_the_masked_expression(build, tokens):
    model = build("tiny-btdnet").eval()
    with torch.no_grad():
        state = model.encode_text(tokens.input_ids, tokens.attention_mask)
    assert set(state) == {"embeddings", "mask", "prior", "prior_mask", "phrase_mask"}
    expected = tokens.attention_mask.bool() & ~state["phrase_mask"]
    assert torch.equal(state["prior_mask"].bool(), expected)


def test_bert_split_follows_the_config(build):
    assert build("tiny-btdnet").text_split == [1, 2, 3, 4]  # 4 layers, even split
    config = preset("tiny-btdnet")
    config["text"]["config"]["num_hidden_layers"] = 6
    config["btdnet"]["text_split"] = [1, 3, 5, 6]
    assert build(config).text_split == [1, 3, 5, 6]


def test_ablation_switches_change_structure(build):
    config = preset("tiny-btdnet")
    config["btdnet"].update(bidirectional=False, background_prior=False, num_bg_tokens=3)
    model = build(config)
    assert all(not hasattr(c, "vis_to_text") and not hasattr(c, "beta") for c in model.correlations)
    assert model.decoder.predictor.prior_embed is None
    assert model.decoder.predictor.background_tokens.shape[0] == 3
    full = build("tiny-btdnet")
    assert all(hasattr(c, "vis_to_text") for c in full.correlations)
    assert full.decoder.predictor.background_tokens.shape[0] == 5


def test_checkpoint_carries_phrase_rules_without_a_tokenizer(tmp_path, tokens, make_images):
    """A checkpoint whose tokenizer source is gone still masks the same way (rules are buffers)."""
    path = init_checkpoint("tiny-btdnet", tmp_path / "ckpt")
    config = json.loads((path / "config.json").read_text())
    config["text"]["tokenizer"] = str(tmp_path / "no-such-tokenizer")
    (path / "config.json").write_text(json.dumps(config))
    model, _ = load_checkpoint(path)
    assert int(model.phrase_masker.ready) == 1
    with torch.no_grad():
        phrase = model.encode_text(tokens.input_ids, tokens.attention_mask)["phrase_mask"]
    assert phrase.sum(1).tolist() == [4, 1]  # "light - duty vehicle", "building"
