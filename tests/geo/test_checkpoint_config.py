"""The typed checkpoint config: one definition read by the library and the plugin, written by
training, checked both ways, round-tripping."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rrsis_geo.checkpoint_config import DEFAULT_INPUT_SIZE, CheckpointConfig
from rrsis_geo.errors import CheckpointError
from rrsis_geo.knowledge import model_knowledge

REPO = Path(__file__).resolve().parents[2]
DEFAULT = REPO / "resources" / "models" / "default"


def test_the_shipped_default_round_trips():
    config = CheckpointConfig.read(DEFAULT)
    raw = json.loads((DEFAULT / "config.json").read_text())
    assert config.architecture == raw["architecture"] and config.input_size == raw["input_size"] == 256
    assert CheckpointConfig.from_dict(config.to_dict()) == config
    assert json.loads(json.dumps(config.to_dict())) == config.to_dict()
    assert {k: v for k, v in config.to_dict().items() if k in raw} == {
        k: (list(v) if isinstance(v, tuple) else v) for k, v in raw.items()}
    assert config.knowledge == model_knowledge(raw)


def test_knowledge_round_trips_through_its_dict():
    knowledge = CheckpointConfig.read(DEFAULT).knowledge
    assert model_knowledge(knowledge.to_dict()) == knowledge
    assert model_knowledge(json.loads(json.dumps(knowledge.to_dict()))) == knowledge


def test_defaults_live_in_one_place():
    bare = CheckpointConfig.from_dict({"architecture": "lavt"})
    assert (bare.input_size, bare.threshold, bare.max_tokens, bare.gsd_m) == (DEFAULT_INPUT_SIZE, 0.5, 20, None)
    assert CheckpointConfig.from_dict(bare.to_dict()) == bare


@pytest.mark.parametrize("field, value, words", [
    ("input_size", "256", "'input_size' must be a positive whole number"),
    ("input_size", 0, "'input_size' must be a positive whole number"),
    ("threshold", 1.5, "'threshold' must be a number between 0 and 1"),
    ("mean", [0.5, 0.5], "'mean' must be three numbers"),
    ("std", [0.2, 0.0, 0.2], "'std' must be three numbers"),
    ("gsd_m", -1, "'gsd_m' must be a positive number"),
    ("vocabulary", "building", "'vocabulary' must be a list of strings"),
    ("format_version", 99, "format_version 99 is newer than this rrsis reads"),
    ("scales", {"car": {"gsd_m": 0.2, "min": 0.3}}, "needs min <= gsd_m <= max"),
])
def test_a_bad_field_is_refused_when_read_and_when_written(tmp_path, field, value, words):
    config = {"architecture": "lgce", "name": "x", "gsd_m": 1.0, field: value}
    with pytest.raises(CheckpointError, match=words):
        CheckpointConfig.from_dict(config)
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=f"checkpoint {folder}: .*{words[:20]}"):
        CheckpointConfig.read(folder)


def test_save_checkpoint_refuses_a_bad_config(tmp_path):
    import torch

    from rrsis_geo.models import save_checkpoint

    with pytest.raises(CheckpointError, match="'threshold' must be a number between 0 and 1"):
        save_checkpoint(tmp_path / "c", torch.nn.Linear(1, 1), {"architecture": "lavt", "threshold": 2})
    assert not (tmp_path / "c").exists()


def test_reading_a_config_needs_no_torch():
    code = ("import sys; from rrsis_geo.checkpoint_config import CheckpointConfig; "
            f"c = CheckpointConfig.read({str(DEFAULT)!r}); c.knowledge; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy', 'rasterio')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
