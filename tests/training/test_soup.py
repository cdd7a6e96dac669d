"""training.soup: the average of checkpoints is a checkpoint the library loads and runs."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from rrsis_geo.errors import CheckpointError
from rrsis_geo.models import load_checkpoint
from rrsis_geo.models.presets import init_checkpoint
from training.soup import average_states, main, make_soup


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("soup")
    return [init_checkpoint("tiny-lgce", folder / f"m{seed}", seed=seed) for seed in (0, 1)]


def test_the_soup_is_the_tensorwise_mean_and_loads_as_a_model(two_models, tmp_path):
    out = make_soup(two_models, tmp_path / "soup")
    a, b = (load_file(str(m / "model.safetensors")) for m in two_models)
    soup = load_file(str(out / "model.safetensors"))
    assert soup.keys() == a.keys()
    floating = [k for k in a if a[k].is_floating_point() and not torch.equal(a[k], b[k])]
    assert floating  # different seeds: the test compares real averages
    for key in floating:
        assert torch.allclose(soup[key], (a[key] + b[key]) / 2)
    model, config = load_checkpoint(out)
    ingredients = config["metrics"]["training"]["soup"]
    assert [entry["checkpoint"] for entry in ingredients] == [str(m) for m in two_models]
    assert all(len(entry["sha256"]) == 64 for entry in ingredients)
    assert (out / "tokenizer.json").is_file()
    with torch.no_grad():  # it runs: one image, one expression
        ids = torch.zeros(1, config["max_tokens"], dtype=torch.long)
        out_logits = model(torch.rand(1, 3, config["input_size"], config["input_size"]), ids, torch.ones_like(ids))
    assert torch.isfinite(out_logits).all()


def test_integer_tensors_keep_the_largest_and_shapes_must_agree():
    a = {"w": torch.ones(2), "n": torch.tensor(3)}
    b = {"w": torch.zeros(2), "n": torch.tensor(5)}
    soup = average_states([a, b])
    assert torch.equal(soup["w"], torch.full((2,), 0.5)) and int(soup["n"]) == 5
    with pytest.raises(CheckpointError, match="'w'"):
        average_states([a, {"w": torch.zeros(3), "n": torch.tensor(1)}])
    with pytest.raises(CheckpointError, match="'n'"):
        average_states([a, {"w": torch.zeros(2)}])


def test_refusals_are_one_line_and_nothing_is_overwritten(two_models, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    config = json.loads((two_models[1] / "config.json").read_text())
    config["input_size"] = 2 * config["input_size"]
    (other / "config.json").write_text(json.dumps(config))
    (other / "model.safetensors").write_bytes((two_models[1] / "model.safetensors").read_bytes())
    assert main(["--checkpoint", str(two_models[0]), "--checkpoint", str(other), "--out", str(tmp_path / "s")]) == 2
    assert "config differs in: input_size" in capsys.readouterr().err
    existing = tmp_path / "exists"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    args = ["--checkpoint", str(two_models[0]), "--checkpoint", str(two_models[1]), "--out", str(existing)]
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err and (existing / "keep.txt").read_text() == "mine"
    assert main(args + ["--overwrite"]) == 0 and not (existing / "keep.txt").exists()
    assert main(["--checkpoint", str(two_models[0]), "--out", str(tmp_path / "one")]) == 2
