"""Training configuration: one YAML file per (model, dataset), with defaults and validation.

A config has six sections; every key is optional except ``model`` and, unless given on the
command line, ``data.root``::

    name: lgce-refsegrs            # run name (logs); the checkpoint's model name comes from `model`
    seed: 0
    model:                         # either a preset plus overrides ...
      preset: lgce-swinb-bert
      overrides: {input_size: 512}
      # ... or a full model config dict:  config: {architecture: lgce, ...}
      load_pretrained: true        # load the encoder weights the model config names
      freeze: []                   # extra modules to freeze, e.g. [vision_encoder]
      text_trainable_layers: null  # null: fine-tune all of BERT; 10: only layers 0-9 (the RRSIS/LAVT code)
    data:
      format: refsegrs             # refsegrs | rrsisd
      root: data/RefSegRS
      train_split: train
      val_split: val
      categories: null             # category vocabulary for per-category IoU (RefSegRS format)
      num_workers: 2
    optim:
      lr: 5.0e-5                   # everything but the encoders
      encoder_lr: 5.0e-5           # vision_encoder + text_encoder (null: same as lr)
      weight_decay: 0.01
      poly_power: 0.9              # lr = base * (1 - it / total) ** power, per iteration
      grad_clip: 1.0               # max global grad norm (null: off)
    loss:
      class_weights: [0.9, 1.1]    # background, target (null: plain CE)
      fg_bg_weight: 0.6            # BTDNet
      recon_weight: 0.1            # BTDNet
    eval:                          # metric conventions (training.metrics); the paper configs use the
      pr_inclusive: false          #   reference code's: true (Pr@t: IoU >= t), 0.0, input
      empty_iou: 1.0               # IoU of an empty prediction on an empty truth
      score_size: ground_truth     # ground_truth | input
    train:
      epochs: 40
      batch_size: 8                # GLOBAL batch, split evenly over the processes
      precision: auto              # auto (bf16 on CUDA, fp32 on CPU) | native (bf16 where the CPU
                                   # or GPU has it natively) | bf16 (anywhere) | fp32
    save:
      dtype: float32               # float16 halves the `best` checkpoint
      reference_frozen_encoders: true

Unknown keys are errors (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

import yaml

from rrsis_geo.errors import InputError

PathLike = Union[str, "os.PathLike[str]"]

DEFAULTS: Dict[str, Any] = {
    "name": None,
    "seed": 0,
    "model": {
        "preset": None,
        "config": None,
        "overrides": {},
        "load_pretrained": True,
        "freeze": [],
        "text_trainable_layers": None,
        # warm start: a checkpoint directory whose weights the model starts from (same layout);
        # recorded in the new checkpoint's metrics.training.init_from
        "init_from": None,
        # leading vision-encoder stages kept as loaded (no backward through them: faster on CPU)
        "freeze_vision_stages": 0,
    },
    "data": {
        "format": "refsegrs",
        "root": None,
        "train_split": "train",
        "val_split": "val",
        "categories": None,
        "num_workers": 0,
        "max_tokens": None,  # null: the model config's max_tokens
        # metres per pixel of the dataset's images as stored (null: from our builder's crops.json,
        # else the model config's); the checkpoint records it scaled to the model's input size
        "gsd_m": None,
        # several sources (our builder's combined sets): {source: weight}, drawn in these
        # proportions, samples_per_epoch draws an epoch (null: the split's size)
        "source_weights": None,
        "samples_per_epoch": None,
        # inside each source, how much rare categories are drawn up (training.sampling): 0 draws
        # triplets uniformly (a category as often as it has triplets), 1 every category equally often
        "category_balance": 0.0,
        # our builder's data sets (crops.json), training split only (training.datasets.crops):
        # share of items replaced by a negative (a category the crop does not hold, empty target)
        "negatives": 0.0,
        # at most this many expected negatives per positive of a category (null: no cap; a rare
        # category is the one most crops lack, so it draws most negatives)
        "negatives_cap": None,
        # augmentation (training.augment.Augmentation): dihedral, scale, brightness, contrast,
        # saturation, hue, gamma, blur, blur_sigma, noise; null: none
        "augment": None,
        # RRSIS-D (refcoco layout) only:
        "dataset_name": "rrsisd",
        "split_by": "unc",
        "image_dir": None,
    },
    "optim": {
        "lr": 5e-5,
        "encoder_lr": None,
        "weight_decay": 0.01,
        "exclude_norm_bias_from_decay": True,
        "no_decay": "all_1d",  # which parameters skip decay: all_1d | backbone_norms (training.optim)
        "betas": [0.9, 0.999],
        "eps": 1e-8,
        "poly_power": 0.9,
        "grad_clip": None,
    },
    "loss": {
        "class_weights": None,
        "fg_bg_weight": 0.6,
        "recon_weight": 0.1,
        "dice_weight": 0.0,  # soft Dice on the target probability (LAVT / LGCE)
        # per-category pixel-text auxiliary head over the decoder features (training.dense_head);
        # needs our builder's crops.json
        "dense_weight": 0.0,
    },
    "eval": {
        "pr_inclusive": False,
        "empty_iou": 1.0,
        "score_size": "ground_truth",
    },
    "train": {
        "epochs": 40,
        "batch_size": 8,
        "eval_batch_size": None,  # per process; null: the per-process training batch
        "precision": "auto",
        "val_every": 1,
        "log_every": 20,
        "num_threads": None,
        "device": "auto",
        "sync_batchnorm": True,
        "find_unused_parameters": False,
        # the validation metric that picks best/: mIoU, or oIoU (the RRSIS reference train.py)
        "select_best": "mIoU",
        "channels_last": False,  # NHWC model and images (faster convolutions on CPU and GPU)
        # run a frozen text encoder once per distinct expression, not in every step (training.text_cache)
        "cache_text": False,
    },
    "save": {
        "dtype": "float32",
        "reference_frozen_encoders": True,
    },
    "log": {
        "tensorboard": "auto",
    },
}

# sections whose keys are free-form (passed on to the model library)
_FREE_FORM = {("model", "overrides"), ("model", "config")}


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> Dict[str, Any]:
    """``base`` updated recursively with ``update`` (dicts merge, everything else replaces)."""
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _check_keys(given: Mapping[str, Any], defaults: Mapping[str, Any], where: str, source: str) -> None:
    for key, value in given.items():
        if key not in defaults:
            known = ", ".join(sorted(defaults))
            raise InputError(f"{source}: unknown setting {where}{key!r}; known here: {known}")
        path = tuple(part for part in (where.strip(".").split(".") if where else []) if part) + (key,)
        if isinstance(defaults[key], dict) and path not in _FREE_FORM:
            if not isinstance(value, Mapping):
                raise InputError(f"{source}: {where}{key} must be a mapping, got {value!r}")
            _check_keys(value, defaults[key], f"{where}{key}.", source)


def validate(config: Mapping[str, Any], source: str = "config") -> Dict[str, Any]:
    """Defaults filled in, unknown keys and bad values rejected with a message that says what to fix."""
    _check_keys(config, DEFAULTS, "", source)
    cfg = deep_merge(DEFAULTS, config)
    model = cfg["model"]
    if bool(model["preset"]) == bool(model["config"]):
        raise InputError(f"{source}: give exactly one of model.preset (a preset name) or model.config (a model config dict)")
    if cfg["data"]["format"] not in ("refsegrs", "rrsisd"):
        raise InputError(f"{source}: data.format must be 'refsegrs' or 'rrsisd', not {cfg['data']['format']!r}")
    if cfg["data"]["augment"] is not None:
        if not isinstance(cfg["data"]["augment"], Mapping):
            raise InputError(f"{source}: data.augment must be a mapping of settings or null")
        from .augment import Augmentation

        Augmentation.from_config(cfg["data"]["augment"])
    balance = cfg["data"]["category_balance"]
    if not isinstance(balance, (int, float)) or not 0 <= balance <= 1:
        raise InputError(f"{source}: data.category_balance is in [0, 1] (0: as drawn, 1: every category alike), not {balance!r}")
    cap = cfg["data"]["negatives_cap"]
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, (int, float)) or not cap >= 0):
        raise InputError(f"{source}: data.negatives_cap is negatives per positive, >= 0 (or null), not {cap!r}")
    negatives = cfg["data"]["negatives"]
    if not isinstance(negatives, (int, float)) or not 0 <= negatives < 1:
        raise InputError(f"{source}: data.negatives is a share in [0, 1), not {negatives!r}")
    for key in ("dice_weight", "dense_weight"):
        if not isinstance(cfg["loss"][key], (int, float)) or cfg["loss"][key] < 0:
            raise InputError(f"{source}: loss.{key} must be a number >= 0, not {cfg['loss'][key]!r}")
    train = cfg["train"]
    for key in ("epochs", "batch_size"):
        if not isinstance(train[key], int) or train[key] < 1:
            raise InputError(f"{source}: train.{key} must be a positive integer, not {train[key]!r}")
    if train["precision"] not in ("auto", "native", "bf16", "fp32"):
        raise InputError(f"{source}: train.precision must be auto, native, bf16 or fp32, not {train['precision']!r}")
    if cfg["optim"]["no_decay"] not in ("all_1d", "backbone_norms"):
        raise InputError(f"{source}: optim.no_decay must be all_1d or backbone_norms, not {cfg['optim']['no_decay']!r}")
    if train["select_best"] not in ("mIoU", "oIoU"):
        raise InputError(f"{source}: train.select_best must be mIoU or oIoU, not {train['select_best']!r}")
    if train["device"] not in ("auto", "cpu", "cuda"):
        raise InputError(f"{source}: train.device must be auto, cpu or cuda, not {train['device']!r}")
    if cfg["save"]["dtype"] not in ("float32", "float16", "bfloat16"):
        raise InputError(f"{source}: save.dtype must be float32, float16 or bfloat16, not {cfg['save']['dtype']!r}")
    evaluation = cfg["eval"]
    if evaluation["score_size"] not in ("ground_truth", "input"):
        raise InputError(f"{source}: eval.score_size must be ground_truth or input, not {evaluation['score_size']!r}")
    if evaluation["empty_iou"] not in (0, 1):
        raise InputError(f"{source}: eval.empty_iou must be 0 or 1, not {evaluation['empty_iou']!r}")
    layers = model["text_trainable_layers"]
    if layers is not None and (not isinstance(layers, int) or isinstance(layers, bool) or layers < 0):
        raise InputError(f"{source}: model.text_trainable_layers must be null or a non-negative integer, not {layers!r}")
    weights = cfg["loss"]["class_weights"]
    if weights is not None and (not isinstance(weights, (list, tuple)) or len(weights) != 2):
        raise InputError(f"{source}: loss.class_weights must be two numbers (background, target) or null")
    return cfg


def load_config(path: PathLike) -> Dict[str, Any]:
    """Read and validate a training config YAML file."""
    file = Path(path)
    if not file.is_file():
        raise InputError(f"training config {file} does not exist; the shipped ones are in training/configs/")
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"{file} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise InputError(f"{file} must hold a mapping of settings, not {type(raw).__name__}")
    cfg = validate(raw, source=str(file))
    if cfg["name"] is None:
        cfg["name"] = file.stem
    return cfg


def with_overrides(
    cfg: Mapping[str, Any],
    *,
    data_root: Optional[PathLike] = None,
    epochs: Optional[int] = None,
    device: Optional[str] = None,
    num_workers: Optional[int] = None,
    num_threads: Optional[int] = None,
) -> Dict[str, Any]:
    """A copy of ``cfg`` with the command-line overrides applied (``None`` keeps the config's value)."""
    update: Dict[str, Any] = {"data": {}, "train": {}}
    if data_root is not None:
        update["data"]["root"] = str(data_root)
    if num_workers is not None:
        update["data"]["num_workers"] = int(num_workers)
    if epochs is not None:
        update["train"]["epochs"] = int(epochs)
    if device is not None:
        update["train"]["device"] = device
    if num_threads is not None:
        update["train"]["num_threads"] = int(num_threads)
    return validate(deep_merge(cfg, update))
