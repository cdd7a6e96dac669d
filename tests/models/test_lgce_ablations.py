"""LGCE's Table III switches change the module structure, and each variant trains."""

from __future__ import annotations

import pytest
import torch

from rrsis_geo.errors import CheckpointError
from rrsis_geo.models.presets import preset


def lgce(build, **switches):
    config = preset("tiny-lgce")
    config["lgce"].update(switches)
    return build(config)


def names(module):
    return {name for name, _ in module.named_parameters()}


def test_full_model_has_language_projection_and_cross_scale(build):
    module = lgce(build).enhancement
    assert module.language_guidance and module.cross_scale
    params = names(module)
    assert "language_token" not in params
    assert {"align_to_deep.weight", "align_to_shallow.weight"} <= params
    assert any(p.startswith("fuse_shallow.") for p in params) and any(p.startswith("fuse_deep.") for p in params)


def test_without_language_guidance_learns_a_token_and_ignores_the_text(build, make_images, tokens):
    model = lgce(build, language_guidance=False).eval()
    assert "language_token" in names(model.enhancement)
    images = make_images(2, 64)
    with torch.no_grad():
        features = model.fused_features(images, model.encode_text(tokens.input_ids, tokens.attention_mask))
        shallow = features[model.shallow_stage]
        a = model.enhancement(shallow, features[3], torch.randn(2, 20, 32), tokens.attention_mask)
        b = model.enhancement(shallow, features[3], torch.randn(2, 20, 32), tokens.attention_mask)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_without_cross_scale_has_no_fusion_step(build):
    params = names(lgce(build, cross_scale=False).enhancement)
    assert not any(p.startswith(("align_to_", "fuse_")) for p in params)
    assert any(p.startswith("block_shallow.") for p in params)


def test_baseline_lavt_has_no_enhancement(build):
    assert not hasattr(build("tiny-lavt"), "enhancement")


@pytest.mark.parametrize(
    "switches",
    [
        {"language_guidance": False},
        {"cross_scale": False},
        {"shallow_stage": 1, "position_embedding": None},  # the layout of earlier checkpoints
        {"position_embedding": "sine"},
    ],
)
def test_variants_run_and_reach_every_parameter(switches, build, make_images, tokens):
    model = lgce(build, **switches).train()
    logits = model(make_images(2, 64), tokens.input_ids, tokens.attention_mask)
    logits.logsumexp(1).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_shallow_stage_is_checked(build):
    with pytest.raises(CheckpointError, match="shallow_stage"):
        lgce(build, shallow_stage=3)


def test_paper_preset_enhances_stride_4_with_learned_positions(build, make_images, tokens):
    # issue 14: the shallow feature is F_1 (the highest resolution) and the tokens carry ViT's
    # learned position embedding; the embedding learns, and other input sizes still work
    config = preset("tiny-lgce")
    assert config["lgce"]["shallow_stage"] == 0 and config["lgce"]["position_embedding"] == "learned"
    assert preset("lgce-swinb-bert")["lgce"]["shallow_stage"] == 0
    model = build(config).train()
    assert model.shallow_stage == 0
    assert model.enhancement.position_shallow.shape == (1, 16, 16, 16)  # Swin stage 1 width, 64 px / 4
    assert model.enhancement.position_deep.shape == (1, 128, 2, 2)
    logits = model(make_images(2, 64), tokens.input_ids, tokens.attention_mask)
    logits[:, 1].mean().backward()
    assert model.enhancement.position_shallow.grad.abs().sum() > 0
    assert model.enhancement.position_deep.grad.abs().sum() > 0
    with torch.no_grad():
        assert model.eval()(make_images(1, 96), tokens.input_ids[:1], tokens.attention_mask[:1]).shape == (1, 2, 96, 96)


def test_position_embedding_is_checked(build):
    with pytest.raises(CheckpointError, match="position_embedding"):
        lgce(build, position_embedding="rotary")
