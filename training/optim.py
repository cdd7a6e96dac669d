"""AdamW with separate encoder / head learning rates, and the poly schedule.

Parameter groups: encoders (``vision_encoder``, ``text_encoder``) get ``encoder_lr``, the rest
(fusion, decoder, heads) ``lr``; frozen parameters are left out. With
``exclude_norm_bias_from_decay``, ``optim.no_decay`` says which parameters get no weight decay:

* ``all_1d`` (default): every 1-D parameter (normalisation weights, biases) and Swin's position
  tables, in every module;
* ``backbone_norms``: the rule of the RRSIS/LAVT reference ``train.py``: only the backbone's
  parameters named ``norm`` and its position tables (its backbone is the Swin encoder with the
  PWAMs inside: here ``vision_encoder`` and ``fusion``); everything else, biases and the decoder's
  and BERT's norms included, decays.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping

import torch
from torch import nn

from .modeling import encoder_parameter_names

_NO_DECAY_NAMES = ("relative_position_bias_table", "absolute_pos_embed", "pos_embed")


NO_DECAY_RULES = ("all_1d", "backbone_norms")


def _no_decay(name: str, param: torch.Tensor, rule: str = "all_1d") -> bool:
    if rule == "backbone_norms":
        in_backbone = name.startswith(("vision_encoder.", "fusion."))
        return in_backbone and ("norm" in name or any(part in name for part in _NO_DECAY_NAMES))
    return param.ndim <= 1 or any(part in name for part in _NO_DECAY_NAMES)


def parameter_groups(model: nn.Module, optim: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """AdamW parameter groups (each with ``name``, ``lr``, ``initial_lr``, ``weight_decay``)."""
    lr = float(optim["lr"])
    encoder_lr = float(optim["encoder_lr"]) if optim.get("encoder_lr") is not None else lr
    decay = float(optim["weight_decay"])
    split_decay = bool(optim.get("exclude_norm_bias_from_decay", True))
    rule = str(optim.get("no_decay", "all_1d"))
    encoders = encoder_parameter_names(model)
    buckets: Dict[str, List[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        part = "encoder" if name in encoders else "head"
        kind = "no_decay" if split_decay and _no_decay(name, param, rule) else "decay"
        buckets.setdefault(f"{part}/{kind}", []).append(param)
    groups = []
    for key in ("encoder/decay", "encoder/no_decay", "head/decay", "head/no_decay"):
        if key in buckets:
            group_lr = encoder_lr if key.startswith("encoder") else lr
            groups.append(
                {
                    "name": key,
                    "params": buckets[key],
                    "lr": group_lr,
                    "initial_lr": group_lr,
                    "weight_decay": decay if key.endswith("/decay") else 0.0,
                }
            )
    if not groups:
        raise ValueError("the model has no trainable parameters (everything is frozen)")
    return groups


def build_optimizer(model: nn.Module, optim: Mapping[str, Any]) -> torch.optim.AdamW:
    """AdamW over :func:`parameter_groups`."""
    return torch.optim.AdamW(
        parameter_groups(model, optim),
        betas=tuple(float(b) for b in optim.get("betas", (0.9, 0.999))),
        eps=float(optim.get("eps", 1e-8)),
    )


class PolySchedule:
    """``lr = initial_lr * (1 - iteration / total) ** power``, set before every optimizer step.

    Its whole state is the iteration counter, so resuming needs no pickled scheduler.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, total_iterations: int, power: float = 0.9):
        self.optimizer = optimizer
        self.total = max(1, int(total_iterations))
        self.power = float(power)
        self.iteration = 0

    def factor(self, iteration: int) -> float:
        return max(0.0, 1.0 - iteration / self.total) ** self.power

    def apply(self) -> None:
        """Set the learning rates for the coming step."""
        scale = self.factor(self.iteration)
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * scale

    def step(self) -> None:
        """Count one finished optimizer step."""
        self.iteration += 1

    def lrs(self) -> Dict[str, float]:
        """Current learning rate per group name."""
        return {group.get("name", str(i)): group["lr"] for i, group in enumerate(self.optimizer.param_groups)}

    def state_dict(self) -> Dict[str, Any]:
        return {"iteration": self.iteration, "total": self.total, "power": self.power}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.iteration = int(state["iteration"])
