"""The training loop: AdamW + poly schedule, bf16 autocast, gradient clipping, DDP, resume, best-on-val.

One process per GPU under ``torchrun`` (or one CPU process per rank with gloo); a single
process otherwise. ``train.batch_size`` is the *global* batch, split evenly over the processes,
so a config means the same optimisation whatever the number of GPUs: the processes see disjoint
shares of the same shuffled order (``DistributedSampler``, also used single-process so that the
order does not depend on the world size) and DDP averages their gradients.

Everything random is re-seeded at the start of every epoch from ``(seed, epoch, rank)``; this is
the RNG part of the resume state: a run resumed at epoch ``e`` draws exactly what an
uninterrupted run draws from epoch ``e`` on.

Only the main process writes: ``OUT/last`` (resume point) after every epoch, ``OUT/best``
whenever the validation metric ``train.select_best`` improves (mIoU; the RRSIS reference code
keeps the best oIoU), ``OUT/iterations.csv``, ``OUT/epochs.csv``,
``OUT/train_config.json``.
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from rrsis_geo.checkpoint_config import CheckpointConfig
from rrsis_geo import phrasing_cache
from rrsis_geo.cpu import native_bf16
from rrsis_geo.errors import CheckpointError, InputError

from . import distributed as dist_utils
from .checkpoints import load_optimizer, load_weights, read_training_state, write_checkpoint
from .augment import Augmentation
from .datasets import build_dataset, collate
from .datasets.crops import TrainingCrops
from .dense_head import DenseCategoryHead, FeatureTap, category_embeddings, dense_loss
from .datasets.stats import model_gsd, read_stats, training_gsd, vocabulary_words
from .evaluate import ShardSampler, autocast, breakdown, evaluate_loader
from .knowledge import checkpoint_knowledge
from .losses import ReferringSegmentationLoss
from .metrics import Scoring, results_from_rows, results_to_rows, summarize
from .modeling import (
    build_training_model,
    encoders_without_weights,
    external_weights,
    freeze,
    freeze_text_layers,
    freeze_vision_stages,
    frozen_modules,
    load_model_tokenizer,
    resolve_model_config,
    set_train_mode,
    torch_dtype,
)
from .optim import PolySchedule, build_optimizer
from .runlog import RunLogger
from .sampling import SourceMixSampler
from .text_cache import TextCache, can_cache, text_state

LAST, BEST = "last", "best"
RUN_CONFIG = "train_config.json"
#: the dense head's weights in last/ (resuming needs them; the library never loads them)
DENSE_HEAD = "dense_head.safetensors"


def seed_everything(seed: int, *streams: int) -> None:
    """Seed Python, NumPy and torch from ``seed`` and extra stream numbers (epoch, rank)."""
    value = int(np.random.SeedSequence([int(seed), *map(int, streams)]).generate_state(1)[0])
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)


def epoch_loader(dataset, batch_size: int, sampler, workers: int, *, pin_memory: bool) -> DataLoader:
    """The training loader: whole batches in the sampler's order, ``workers`` loading processes.

    A worker process holds its own copy of ``dataset``, made when an epoch's iteration starts: a
    data set that draws per epoch (``set_epoch``: :class:`TrainingCrops`' negatives and
    augmentation) gets fresh workers each epoch, since workers kept from the last epoch never see
    the new one and would draw the first epoch's items again every epoch.
    """
    per_epoch = callable(getattr(dataset, "set_epoch", None))
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=True, num_workers=workers,
                      pin_memory=pin_memory, persistent_workers=workers > 0 and not per_epoch, collate_fn=collate)


class TrainForward(nn.Module):
    """Makes ``forward_train`` the ``forward`` that DDP wraps (DDP only synchronises ``forward``).

    ``words``/``words_mask`` instead of token ids: the frozen text encoder's cached output
    (:mod:`training.text_cache`). ``dense_head``: the auxiliary per-category head
    (:mod:`training.dense_head`) over the decoder's last features; its logits come back as
    ``"dense"``.
    """

    def __init__(self, model: nn.Module, dense_head: Optional[nn.Module] = None):
        super().__init__()
        self.model = model
        self.dense_head = dense_head
        self.tap = FeatureTap(model.decoder.classifier) if dense_head is not None else None

    def forward(
        self,
        images: torch.Tensor,
        input_ids: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        words: Optional[torch.Tensor] = None,
        words_mask: Optional[torch.Tensor] = None,
    ) -> Dict[str, torch.Tensor]:
        if words is not None:
            outputs = {"logits": self.model.segment(images, text_state(self.model, words, words_mask))}
        elif hasattr(self.model, "forward_train"):
            outputs = self.model.forward_train(images, input_ids, attention_mask)
        else:
            outputs = {"logits": self.model(images, input_ids, attention_mask)}
        if self.dense_head is not None:
            outputs["dense"] = self.dense_head(self.tap.take())
        return outputs


def diverged(loss: float, iteration: int) -> InputError:
    """The error for a loss that is no longer finite (a setting the user can change caused it)."""
    return InputError(
        f"training diverged: the loss is {loss} by iteration {iteration}; lower optim.lr / optim.encoder_lr "
        "or set optim.grad_clip, and start again (last/ holds the latest finite epoch)"
    )


def resolve_precision(setting: str, device: torch.device) -> str:
    """``auto``: bf16 on a CUDA GPU that supports it, fp32 on the CPU (bit-for-bit comparable
    runs); ``native``: bf16 wherever the device computes it natively (such a GPU, or a CPU with
    AVX512-BF16 or AMX), else fp32; ``bf16``: bf16 anyway (on a CPU without native bf16 torch
    emulates it, several times slower than fp32)."""
    if setting == "fp32":
        return "fp32"
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if setting == "bf16" or (setting == "native" and native_bf16()) else "fp32"


class Trainer:
    """Runs one training job described by a validated config (see :mod:`training.config`)."""

    def __init__(self, cfg: Mapping[str, Any], out_dir: Path, ctx: dist_utils.DistContext, *, resume: bool = False, overwrite: bool = False):
        self.cfg = cfg
        self.out = Path(out_dir)
        self.ctx = ctx
        self.device = ctx.device
        train = cfg["train"]
        if train["batch_size"] % ctx.world_size:
            raise InputError(
                f"train.batch_size {train['batch_size']} is the global batch and must divide evenly over "
                f"{ctx.world_size} processes"
            )
        self.local_batch = train["batch_size"] // ctx.world_size
        self.precision = resolve_precision(train["precision"], self.device)
        self.channels_last = bool(train["channels_last"])
        self._check_out_dir(resume, overwrite)
        self.log = RunLogger(self.out, ctx.is_main, cfg["log"]["tensorboard"])
        if self.precision == "bf16" and self.device.type == "cpu" and not native_bf16():
            self.log.info("WARNING: train.precision bf16 on a CPU without native bf16 (avx512_bf16/amx): torch emulates it, slower than fp32")
        if train["num_threads"]:
            torch.set_num_threads(int(train["num_threads"]))
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick its fastest kernels

        seed_everything(cfg["seed"])  # identical model initialisation on every rank
        self.model_config = resolve_model_config(cfg["model"])
        self.tokenizer = load_model_tokenizer(self.model_config)
        self._build_data()
        self._build_model()
        self.text_cache = self._build_text_cache() if train["cache_text"] else None
        loss = dict(cfg["loss"])
        self.dense_weight = float(loss.pop("dense_weight"))
        self.dense_head = self._build_dense_head() if self.dense_weight > 0 else None
        self.optimizer = build_optimizer(self.model, cfg["optim"])
        if self.dense_head is not None:
            lr = float(cfg["optim"]["lr"])
            self.optimizer.add_param_group(
                {"name": "dense_head", "params": list(self.dense_head.parameters()), "lr": lr, "initial_lr": lr, "weight_decay": 0.0}
            )
        self.schedule = PolySchedule(self.optimizer, train["epochs"] * len(self.train_loader), cfg["optim"]["poly_power"])
        self.criterion = ReferringSegmentationLoss(**loss).to(self.device)
        self.start_epoch = 0
        self.select = str(train["select_best"])
        self.best: Dict[str, Any] = {"value": -math.inf, "epoch": None}
        self.history: List[Dict[str, Any]] = []
        if resume:
            self._resume()
        self._prepare_out_dir(fresh=not resume)
        self.step_module = self._wrap_ddp()

    # -- setup ----------------------------------------------------------------------------------
    def _check_out_dir(self, resume: bool, overwrite: bool) -> None:
        has_run = (self.out / LAST).exists() or (self.out / BEST).exists()
        if resume and not (self.out / LAST).exists():
            raise InputError(f"nothing to resume: {self.out / LAST} does not exist; run without --resume")
        if has_run and not resume and not overwrite:
            raise InputError(
                f"{self.out} already holds a training run; pass --resume to continue it, --overwrite to "
                "start again over it, or choose another --out"
            )

    def _build_data(self) -> None:
        data = self.cfg["data"]
        self.train_set = build_dataset(data, data["train_split"], self.tokenizer, self.model_config)
        self.augment = Augmentation.from_config(data["augment"])
        dense = self.cfg["loss"]["dense_weight"] > 0
        if data["negatives"] or dense or self.augment is not None:
            self.train_set = TrainingCrops(
                self.train_set, Path(data["root"]), negatives=float(data["negatives"]),
                negatives_cap=None if data["negatives_cap"] is None else float(data["negatives_cap"]), dense=dense,
                augment=self.augment, seed=int(self.cfg["seed"]),
            )
        self.sampler = self._train_sampler()
        workers, pin_memory = int(data["num_workers"]), self.device.type == "cuda"
        self.train_loader = epoch_loader(self.train_set, self.local_batch, self.sampler, workers, pin_memory=pin_memory)
        if len(self.train_loader) == 0:
            raise InputError(
                f"the training split has {len(self.train_set)} samples, fewer than one batch of "
                f"{self.local_batch} per process; lower train.batch_size"
            )
        # ground sample distance of what the model sees (stored GSD scaled to the input size)
        input_size = int(self.model_config["input_size"])
        if data["gsd_m"] is not None:
            self.trained_gsd = model_gsd(data["gsd_m"], self.train_set.image_width(0), input_size)
        else:
            self.trained_gsd = training_gsd(Path(data["root"]), data["train_split"], input_size)
        # per-category scales and phrasings, where the data set records them
        self.knowledge = checkpoint_knowledge(self.train_set.samples, self.train_set.image_width(0), input_size)
        if self.augment is not None and self.augment.zooms:
            widen_scales(self.knowledge, self.augment.scale)
        self.val_set = None
        if data["val_split"]:
            self.val_set = build_dataset(data, data["val_split"], self.tokenizer, self.model_config, return_gt=True)
            eval_batch = int(self.cfg["train"]["eval_batch_size"] or self.local_batch)
            self.val_loader = DataLoader(
                self.val_set,
                batch_size=eval_batch,
                sampler=ShardSampler(len(self.val_set), self.ctx.rank, self.ctx.world_size),
                num_workers=workers,
                pin_memory=pin_memory,
                persistent_workers=workers > 0,  # the validation set draws nothing per epoch
                collate_fn=collate,
            )

    def _train_sampler(self) -> Sampler:
        data, seed = self.cfg["data"], int(self.cfg["seed"])
        balance = float(data["category_balance"] or 0.0)
        if not data["source_weights"] and not balance:
            return DistributedSampler(self.train_set, num_replicas=self.ctx.world_size, rank=self.ctx.rank, shuffle=True, seed=seed)
        if data["source_weights"]:
            sources, weights = self.train_set.sources, data["source_weights"]
            if any(source is None for source in sources):
                raise InputError(f"data.source_weights needs a data set that records each sample's source; {data['root']} does not")
        else:  # category balance over the whole split
            sources, weights = ["all"] * len(self.train_set), {"all": 1.0}
        return SourceMixSampler(
            sources,
            weights,
            num_samples=int(data["samples_per_epoch"] or len(self.train_set)),
            rank=self.ctx.rank,
            world_size=self.ctx.world_size,
            seed=seed,
            categories=[s.category for s in self.train_set.samples] if balance else None,
            category_balance=balance,
        )

    def _build_model(self) -> None:
        model_cfg = self.cfg["model"]
        self.pretrained_loaded = bool(model_cfg["load_pretrained"])
        if self.pretrained_loaded:
            for module in encoders_without_weights(self.model_config):
                section = "vision" if module == "vision_encoder" else "text"
                self.log.info(
                    f"WARNING: {section}.pretrained is null, so {module} starts from random weights; the papers "
                    f"start from pretrained encoders: set model.overrides.{section}.pretrained to a local weights path"
                )
        model = build_training_model(self.model_config, self.pretrained_loaded)
        self.init_from = warm_start(model, Path(model_cfg["init_from"])) if model_cfg["init_from"] else None
        if self.init_from:
            self.log.info(f"warm start from {self.init_from['checkpoint']} ({self.init_from['name']})")
        self.frozen = frozen_modules(self.model_config, list(model_cfg["freeze"]))
        freeze(model, self.frozen)
        freeze_text_layers(model, model_cfg["text_trainable_layers"])
        self.frozen_stage_modules = freeze_vision_stages(model, int(model_cfg["freeze_vision_stages"]))
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        if self.ctx.distributed and self.device.type == "cuda" and self.cfg["train"]["sync_batchnorm"]:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        self.external = (
            external_weights(self.model_config, self.frozen, self.pretrained_loaded)
            if self.cfg["save"]["reference_frozen_encoders"]
            else []
        )
        n_train = sum(p.numel() for p in self.trainable)
        n_all = sum(p.numel() for p in model.parameters())
        self.log.info(
            f"model {self.model_config.get('name', self.model_config['architecture'])}: {n_all / 1e6:.2f} M parameters, "
            f"{n_train / 1e6:.2f} M trained; frozen: {', '.join(self.frozen) or 'none'}; device {self.device}, "
            f"{self.precision}, {self.ctx.world_size} process(es), batch {self.cfg['train']['batch_size']} "
            f"({self.local_batch} per process)"
        )

    def _build_text_cache(self) -> TextCache:
        reason = can_cache(self.model, self.frozen)
        if reason:
            raise InputError(f"train.cache_text cannot be used: {reason}")
        base = getattr(self.train_set, "base", self.train_set)
        started = time.time()
        cache = TextCache.build(self.model, base.input_ids, base.attention_mask)
        self.log.info(f"text encoder run once for {cache.distinct} distinct expressions ({time.time() - started:.1f} s)")
        return cache

    def _build_dense_head(self) -> nn.Module:
        if not isinstance(self.train_set, TrainingCrops):
            raise InputError("loss.dense_weight needs our builder's data set (crops.json)")
        classifier = getattr(getattr(self.model, "decoder", None), "classifier", None)
        if not isinstance(classifier, nn.Conv2d):
            raise InputError(f"loss.dense_weight needs a LAVT-family decoder; {type(self.model).__name__} has none")
        max_tokens = int(self.cfg["data"]["max_tokens"] or self.model_config.get("max_tokens") or CheckpointConfig.max_tokens)
        embeddings = category_embeddings(self.model, self.tokenizer, self.train_set.categories, max_tokens)
        head = DenseCategoryHead(classifier.in_channels, embeddings).to(self.device)
        if self.channels_last:
            head.to(memory_format=torch.channels_last)
        self.log.info(f"dense head over {len(self.train_set.categories)} categories: {', '.join(self.train_set.categories)}")
        return head

    def _wrap_ddp(self) -> nn.Module:
        step = TrainForward(self.model, self.dense_head)
        if not self.ctx.distributed:
            return step
        return nn.parallel.DistributedDataParallel(
            step,
            device_ids=[self.device.index] if self.device.type == "cuda" else None,
            find_unused_parameters=bool(self.cfg["train"]["find_unused_parameters"]),
        )

    def _prepare_out_dir(self, fresh: bool) -> None:
        """Create ``OUT`` (only once everything else is set up), clear old logs of a fresh run."""
        if self.ctx.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            if fresh:
                for name in ("iterations.csv", "epochs.csv"):
                    (self.out / name).unlink(missing_ok=True)
            record = {"config": self.cfg, "model_config": self.model_config}
            (self.out / RUN_CONFIG).write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
        dist_utils.barrier(self.ctx)

    def _resume(self) -> None:
        last = self.out / LAST
        recorded = self.out / RUN_CONFIG
        if recorded.is_file():
            previous = json.loads(recorded.read_text(encoding="utf-8")).get("model_config")
            if previous != json.loads(json.dumps(self.model_config, default=str)):
                raise CheckpointError(
                    f"the model config differs from the one {self.out} was trained with; "
                    "resume with the same config or start a new run"
                )
        state = read_training_state(last)
        load_weights(self.model, last, [e["prefix"] for e in self.external])
        if self.dense_head is not None:
            from safetensors.torch import load_file

            if not (last / DENSE_HEAD).is_file():
                raise CheckpointError(f"{last} holds no {DENSE_HEAD}; resume with the config it was trained with")
            self.dense_head.load_state_dict(load_file(str(last / DENSE_HEAD)))
        load_optimizer(self.optimizer, last, state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        if state["schedule"].get("total") != self.schedule.total:
            self.log.info(
                f"the schedule now spans {self.schedule.total} iterations (was {state['schedule'].get('total')}): "
                "the learning rate follows the new length from here"
            )
        self.start_epoch = int(state["epoch"])
        best = state.get("best") or {}
        value = best.get("value", best.get("mIoU"))  # runs before select_best recorded the mIoU only
        if best.get("metric", "mIoU") != self.select:
            value = None  # another metric chose the best so far: the next validation decides afresh
        self.best = {"value": -math.inf if value is None else float(value), "epoch": best.get("epoch")}
        self.history = list(state.get("history", []))
        self.log.info(f"resumed {last} after epoch {self.start_epoch} (iteration {self.schedule.iteration})")

    # -- loop -----------------------------------------------------------------------------------
    def fit(self, stop_after: Optional[int] = None, time_limit_s: Optional[float] = None) -> Dict[str, Any]:
        """Train up to the configured epochs (at most ``stop_after`` of them in this call, and none
        begun after ``time_limit_s`` seconds of training).

        Both serve jobs with a wall-time limit and A/B runs at a fixed budget: the schedule still
        spans all epochs, and ``--resume`` continues exactly where this call stopped. Returns a summary.
        """
        epochs = int(self.cfg["train"]["epochs"])
        if self.start_epoch >= epochs:
            self.log.info(f"already trained for {self.start_epoch} epochs (of {epochs}); nothing to do")
        end = epochs if stop_after is None else min(epochs, self.start_epoch + int(stop_after))
        trained_s = 0.0
        for epoch in range(self.start_epoch, end):
            if time_limit_s is not None and trained_s >= time_limit_s:
                self.log.info(f"time limit: {trained_s:.0f} s of training reached before epoch {epoch + 1}; stopping")
                break
            seed_everything(self.cfg["seed"], epoch, self.ctx.rank)
            self.sampler.set_epoch(epoch)
            if isinstance(self.train_set, TrainingCrops):
                self.train_set.set_epoch(epoch)
            train_loss, seconds = self._train_epoch(epoch)
            trained_s += seconds
            if not math.isfinite(train_loss):
                raise diverged(train_loss, self.schedule.iteration)
            row: Dict[str, Any] = {"epoch": epoch + 1, "train_loss": train_loss, "seconds": round(seconds, 2)}
            metrics = None
            val_every = int(self.cfg["train"]["val_every"])
            if self.val_set is not None and ((epoch + 1) % val_every == 0 or epoch + 1 == epochs):
                started = time.time()
                metrics = self._validate()
                row["val_seconds"] = round(time.time() - started, 2)
                row.update({k: v for k, v in metrics.items() if isinstance(v, float)})
            self.history.append(row)
            self._save(epoch + 1, metrics)
            self.log.epoch(epoch + 1, row)
            message = f"epoch {epoch + 1}/{epochs}: loss {train_loss:.4f}, {seconds:.1f} s"
            if metrics:
                message += f"; val mIoU {100 * metrics['mIoU']:.2f}, oIoU {100 * metrics['oIoU']:.2f}"
            self.log.info(message)
        self.log.close()
        dist_utils.barrier(self.ctx)
        return {
            "out": str(self.out),
            "best": str(self.out / BEST),
            "last": str(self.out / LAST),
            "best_epoch": self.best["epoch"],
            "best_metric": self.select,
            "best_value": None if self.best["value"] == -math.inf else self.best["value"],
            "epochs_done": len(self.history),
            "history": self.history,
        }

    def _train_epoch(self, epoch: int) -> tuple:
        set_train_mode(self.model, self.frozen, self.frozen_stage_modules)
        grad_clip = self.cfg["optim"]["grad_clip"]
        log_every = max(1, int(self.cfg["train"]["log_every"]))
        total = torch.zeros((), device=self.device)
        steps = 0
        started = time.time()
        for batch in self.train_loader:
            images = batch["image"].to(self.device, non_blocking=True)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            target = batch["mask"].to(self.device, non_blocking=True)
            self.schedule.apply()
            with autocast(self.device, self.precision):
                outputs = self.step_module(images, **self._text_inputs(batch))
            dense = outputs.pop("dense", None)
            loss, parts = self.criterion(outputs, target)
            if dense is not None:
                known = batch["dense_known"].to(self.device, non_blocking=True)
                part = dense_loss(dense.float(), batch["dense"].to(self.device, non_blocking=True), known)
                loss = loss + self.dense_weight * part
                parts = {**parts, "dense": part.detach()}
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(self.trainable, float(grad_clip))
            self.optimizer.step()
            self.schedule.step()
            total += loss.detach()
            steps += 1
            if self.schedule.iteration % log_every == 0:
                self._log_iteration(epoch, loss, parts)
        seconds = time.time() - started
        mean_loss = dist_utils.all_reduce_mean(total / max(steps, 1), self.ctx)
        return float(mean_loss), seconds

    def _text_inputs(self, batch: Mapping[str, Any]) -> Dict[str, torch.Tensor]:
        """The step module's text arguments: cached text-encoder output, or the token ids."""
        if self.text_cache is not None:
            cached = self.text_cache.lookup(batch.get("text_index", batch["index"]), self.device)
            return {"words": cached["words"], "words_mask": cached["mask"]}
        return {
            "input_ids": batch["input_ids"].to(self.device, non_blocking=True),
            "attention_mask": batch["attention_mask"].to(self.device, non_blocking=True),
        }

    def _log_iteration(self, epoch: int, loss: torch.Tensor, parts: Mapping[str, torch.Tensor]) -> None:
        # the mean over processes: with equal local batches this is the loss of the global batch
        values = torch.stack([loss.detach().float()] + [v.float() for v in parts.values()])
        values = dist_utils.all_reduce_mean(values, self.ctx).tolist()
        if not math.isfinite(values[0]):  # checked here, not every step, to keep the GPU unsynchronised
            raise diverged(values[0], self.schedule.iteration)
        row: Dict[str, Any] = {"epoch": epoch + 1, "iteration": self.schedule.iteration, "loss": values[0]}
        row.update({name: value for name, value in zip(parts, values[1:])})
        row.update({f"lr_{name.replace('/', '_')}": lr for name, lr in self.schedule.lrs().items()})
        self.log.iteration(self.schedule.iteration, row)
        self.log.info(f"epoch {epoch + 1} iteration {self.schedule.iteration}: loss {values[0]:.4f}")

    def _validate(self) -> Dict[str, Any]:
        scoring = Scoring(**self.cfg["eval"])
        results = evaluate_loader(
            self.model, self.val_loader, self.device, precision=self.precision, score_size=scoring.score_size
        )
        gathered = dist_utils.gather_objects(results_to_rows(results), self.ctx)
        rows = {row["index"]: row for part in gathered for row in part}
        ordered = list(results_from_rows(rows[i] for i in sorted(rows)))
        metrics = summarize(ordered, scoring)
        groups = breakdown(ordered, self.val_set.samples, scoring)  # per source, phrasing, category
        if groups:
            metrics["breakdown"] = groups
        set_train_mode(self.model, self.frozen, self.frozen_stage_modules)
        return metrics

    # -- checkpoints ----------------------------------------------------------------------------
    def _checkpoint_config(self, epoch: int, metrics: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
        config = dict(self.model_config)
        data = self.cfg["data"]
        if self.trained_gsd is not None:
            config["gsd_m"] = self.trained_gsd
        vocabulary = vocabulary_words(read_stats(Path(data["root"]))) or getattr(self.train_set, "vocabulary", None)
        if vocabulary:
            config["vocabulary"] = list(vocabulary)
        config.update(self.knowledge)
        if self.external:
            config["external_weights"] = self.external
        seconds = [row["seconds"] for row in self.history]
        training = {
            "config": self.cfg["name"],
            "epochs": epoch,
            "train_seconds": round(sum(seconds), 1),
            "seconds_per_epoch": round(sum(seconds) / len(seconds), 2) if seconds else None,
            "device": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu",
            "processes": self.ctx.world_size,
            "batch_size": self.cfg["train"]["batch_size"],
            "train_split": data["train_split"],
            "train_samples": len(self.train_set),
            "precision": self.precision,
            "threads": torch.get_num_threads() if self.device.type == "cpu" else None,
            "channels_last": self.channels_last,
            "cache_text": self.text_cache is not None,
        }
        if self.init_from:
            training["init_from"] = self.init_from
        if metrics is not None:
            measured = dict(metrics)
            measured.update({"dataset": data["format"], "data_root": str(data["root"]), "split": data["val_split"], "epoch": epoch})
            config["metrics"] = {**measured, "training": training}
        else:
            config["metrics"] = {"training": training}
        return config

    def _save(self, epoch: int, metrics: Optional[Mapping[str, Any]]) -> None:
        improved = metrics is not None and metrics[self.select] > self.best["value"]
        if improved:
            self.best = {"value": float(metrics[self.select]), "epoch": epoch}
        if not self.ctx.is_main:
            return
        config = self._checkpoint_config(epoch, metrics)
        best_value = None if self.best["value"] == -math.inf else self.best["value"]
        best_state = {"metric": self.select, "value": best_value, "epoch": self.best["epoch"]}
        state = {
            "epoch": epoch,
            "schedule": self.schedule.state_dict(),
            "best": best_state,
            "seed": int(self.cfg["seed"]),
            "world_size": self.ctx.world_size,
            "history": self.history,
        }
        # last/ stays float32 whatever save.dtype: it is what training resumes from
        extra = {DENSE_HEAD: self.dense_head.state_dict()} if self.dense_head is not None else None
        write_checkpoint(
            self.out / LAST, self.model, config, self.tokenizer, optimizer=self.optimizer, training_state=state, extra_tensors=extra
        )
        if improved or self.val_set is None:
            write_checkpoint(self.out / BEST, self.model, config, self.tokenizer, dtype=self._save_dtype())
            phrasing_cache.write(self.out / BEST, self.model, self.tokenizer, config)  # a fast "understood as"
            if improved:
                self.log.info(f"new best validation {self.select} {100 * self.best['value']:.2f} at epoch {epoch}: {self.out / BEST}")

    def _save_dtype(self) -> Optional[torch.dtype]:
        dtype = torch_dtype(self.cfg["save"]["dtype"])
        return None if dtype == torch.float32 else dtype


def warm_start(model: nn.Module, checkpoint: Path) -> Dict[str, Any]:
    """Load a checkpoint's weights into ``model`` (same layout; frozen encoders it references by
    package stay as built); returns its lineage entry (:func:`lineage_entry`)."""
    from rrsis_geo.models.checkpoint import WEIGHTS_NAME

    config_path = checkpoint / "config.json"
    if not config_path.is_file() or not (checkpoint / WEIGHTS_NAME).is_file():
        raise InputError(f"model.init_from: {checkpoint} is not a checkpoint directory (config.json, {WEIGHTS_NAME})")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    prefixes = [entry["prefix"] for entry in config.get("external_weights") or []]
    state = load_weights_file(checkpoint / WEIGHTS_NAME)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # a tensor of another shape
        first = str(exc).split("\n\t")[1].split(":")[0] if "\n\t" in str(exc) else "a tensor of another shape"
        raise CheckpointError(
            f"model.init_from: {checkpoint} does not fit the configured model ({first}); warm start needs the same architecture"
        ) from None
    missing = [k for k in missing if not k.startswith(tuple(prefixes))]
    if missing or unexpected:
        raise CheckpointError(
            f"model.init_from: {checkpoint} does not fit the configured model (tensor {(missing or unexpected)[0]!r}); "
            "warm start needs the same architecture"
        )
    return lineage_entry(checkpoint, config)


def lineage_entry(checkpoint: Path, config: Mapping[str, Any]) -> Dict[str, Any]:
    """What a model made from ``checkpoint`` records of it: path, name, weights sha256, and the
    checkpoint's own warm-start lineage."""
    from rrsis_geo.models.checkpoint import WEIGHTS_NAME
    from rrsis_geo.models.pretrained import sha256_file

    previous = ((config.get("metrics") or {}).get("training") or {}).get("init_from")
    entry: Dict[str, Any] = {"checkpoint": str(checkpoint), "name": config.get("name"), "sha256": sha256_file(checkpoint / WEIGHTS_NAME)}
    if previous:
        entry["init_from"] = previous
    return entry


def load_weights_file(path: Path) -> Dict[str, torch.Tensor]:
    """A safetensors file as float32 tensors (checkpoints may store float16)."""
    from safetensors.torch import load_file

    return {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}


def widen_scales(knowledge: Dict[str, Any], zoom: tuple) -> None:
    """Zooming by ``zoom`` = (low, high) showed each category at GSD / high .. GSD / low: widen
    its learned range (what a scene is checked against) accordingly, in place."""
    low, high = zoom
    for scale in (knowledge.get("scales") or {}).values():
        scale["min"] = round(scale["min"] / high, 4)
        scale["max"] = round(scale["max"] / low, 4)


def train(
    cfg: Mapping[str, Any],
    out_dir: Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    stop_after: Optional[int] = None,
    time_limit_s: Optional[float] = None,
) -> Dict[str, Any]:
    """Run a training job (joins the ``torchrun`` process group when launched by it)."""
    ctx = dist_utils.init_distributed(cfg["train"]["device"])
    completed = False
    try:
        summary = Trainer(cfg, out_dir, ctx, resume=resume, overwrite=overwrite).fit(stop_after, time_limit_s)
        completed = True
        return summary
    finally:
        dist_utils.shutdown(ctx, wait=completed)
