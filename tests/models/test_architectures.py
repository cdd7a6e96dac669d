"""Every architecture at tiny size: shapes, gradients, padding, text caching, input sizes, checkpoints."""

from __future__ import annotations

import json
import os
import stat

import pytest
import torch
import torch.nn.functional as F

from rrsis_geo.errors import CheckpointError
from rrsis_geo.models import load_checkpoint, tokenize
from rrsis_geo.models.presets import init_checkpoint, preset

TINY = ["tiny-lavt", "tiny-lgce", "tiny-btdnet"]


def training_loss(model, images, tokens, target):
    """The loss the training area uses (BTDNet: CE + 0.6 per-map Fg-Bg BCE + 0.1 masked reconstruction MSE)."""
    out = model.forward_train(images, tokens.input_ids, tokens.attention_mask)
    loss = F.cross_entropy(out["logits"], target)
    if "recon_pred" in out:
        error = ((out["recon_pred"] - out["recon_target"]) ** 2).mean(-1)
        bce = F.binary_cross_entropy_with_logits
        fg_bg = bce(out["logits"][:, 1], target.float()) + bce(out["logits"][:, 0], 1.0 - target.float())
        loss = loss + 0.6 * fg_bg + 0.1 * error[out["recon_mask"]].mean()
    return out, loss


@pytest.mark.parametrize("name", TINY)
def test_forward_backward_512_reaches_every_parameter(name, build, make_images, tokens):
    model = build(name).train()
    images = make_images(2, 512)
    target = (images[:, 0] > 0.5).long()
    out, loss = training_loss(model, images, tokens, target)
    assert out["logits"].shape == (2, 2, 512, 512)
    loss.backward()
    problems = []
    for pname, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.grad is None:
            problems.append(f"{pname}: no gradient")
        elif not torch.isfinite(param.grad).all():
            problems.append(f"{pname}: non-finite gradient")
        elif param.grad.abs().sum() == 0:
            problems.append(f"{pname}: gradient is exactly zero")
    assert not problems, problems


@pytest.mark.parametrize("name", TINY)
def test_padding_changes_nothing(name, build, make_images, tokenizer, tokens, expressions):
    model = build(name).eval()
    images = make_images(2, 64)
    longer = tokenize(tokenizer, expressions, 32)
    garbage = tokens.input_ids.clone()
    padded = tokens.attention_mask == 0
    garbage[padded] = torch.randint(1000, 30000, (int(padded.sum()),), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = model(images, tokens.input_ids, tokens.attention_mask)
        with_garbage = model(images, garbage, tokens.attention_mask)
        with_more_padding = model(images, longer.input_ids, longer.attention_mask)
        other_text = model(images, tokens.input_ids.flip(0), tokens.attention_mask.flip(0))
    assert torch.equal(reference, with_garbage)
    torch.testing.assert_close(with_more_padding, reference, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(other_text, reference, atol=1e-3), "the expression has no effect at all"


@pytest.mark.parametrize("name", TINY)
def test_encoded_text_broadcast_matches_forward(name, build, make_images, tokens):
    """The engine encodes an expression once (batch 1) and segments batches of tiles with it."""
    model = build(name).eval()
    images = make_images(3, 64, seed=2)
    ids, mask = tokens.input_ids[:1], tokens.attention_mask[:1]
    with torch.no_grad():
        text = model.encode_text(ids, mask)
        cached = model.segment(images, text)
        direct = model(images, ids.expand(3, -1), mask.expand(3, -1))
    assert cached.shape == (3, 2, 64, 64)
    torch.testing.assert_close(cached, direct, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("size", [96, 160])
def test_any_multiple_of_32(name, size, build, make_images, tokens):
    model = build(name).eval()
    with torch.no_grad():
        logits = model(make_images(2, size), tokens.input_ids, tokens.attention_mask)
    assert logits.shape == (2, 2, size, size)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", TINY)
def test_checkpoint_round_trip_reproduces_logits(name, build, make_images, tokens, tmp_path):
    path = init_checkpoint(name, tmp_path / "ckpt", seed=3)
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in path.iterdir()}
    umask = os.umask(0)
    os.umask(umask)  # readable as the umask allows, not private like mkdtemp's 0700 and safetensors' 0600
    assert stat.S_IMODE(path.stat().st_mode) == 0o777 & ~umask
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask for p in path.iterdir())
    loaded, config = load_checkpoint(path)
    assert config["name"] == name and not loaded.training
    original = build(name, seed=3).eval()
    images = make_images(2, 64)
    with torch.no_grad():
        expected = original(images, tokens.input_ids, tokens.attention_mask)
        actual = loaded(images, tokens.input_ids, tokens.attention_mask)
    assert torch.equal(expected, actual)


def test_mismatched_checkpoint_names_the_tensor(tmp_path):
    path = init_checkpoint("tiny-lgce", tmp_path / "ckpt")
    config = json.loads((path / "config.json").read_text())
    config["decoder"]["hidden"] = 48  # the stored decoder has 32 channels
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"decoder\.steps\.0\.0\.0\.weight"):
        load_checkpoint(path)


def test_group_norm_decoder_is_batch_independent(build, make_images, tokens):
    """decoder_norm "group" (what the DDP test needs) makes each sample's output its own, in training too."""
    config = preset("tiny-lavt")
    config["decoder_norm"] = "group"
    model = build(config).train()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    images = make_images(2, 64)
    with torch.no_grad():
        both = model(images, tokens.input_ids, tokens.attention_mask)
        first = model(images[:1], tokens.input_ids[:1], tokens.attention_mask[:1])
    torch.testing.assert_close(both[:1], first, rtol=1e-5, atol=1e-5)


def test_text_frozen_is_exposed(build):
    config = preset("tiny-lgce")
    config["text"]["frozen"] = True
    assert build(config).text_frozen is True
    assert build("tiny-lgce").text_frozen is False
