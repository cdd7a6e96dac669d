#!/usr/bin/env python
"""Overfit the tiny paper presets on 8 samples: the loss must fall and the IoU rise.

    .venv/bin/python scripts/overfit_tiny.py                       # tiny-lgce and tiny-btdnet
    .venv/bin/python scripts/overfit_tiny.py --configs training/configs/tiny_btdnet.yaml --steps 80

Each config's model (preset + overrides, e.g. tiny-btdnet with the paper's heads, BSC and
predictor) is trained from random init with its training loss and settings (``optim.lr``,
``loss``) on 8 fixed synthetic samples (4 images, a red square "building" and a blue disk
"vehicle" in each; the expression decides which is the target), full batch, AdamW. Printed every
``--every`` steps: the loss and its parts, and the mean IoU of the inference prediction on the
same 8 samples. A figure-printing check, not a pass/fail test.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import List, Optional, Tuple

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
CONFIGS = [REPO / "training/configs/tiny_lgce.yaml", REPO / "training/configs/tiny_btdnet.yaml"]
EXPRESSIONS = ("red building along the road", "blue vehicle in the parking area")


def samples(size: int, seed: int = 0) -> Tuple[torch.Tensor, List[str], torch.Tensor]:
    """8 samples: ``[8, 3, size, size]`` normalised images, expressions, ``[8, size, size]`` targets."""
    generator = torch.Generator().manual_seed(seed)
    images, texts, targets = [], [], []
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    for _ in range(4):
        image = 0.2 * torch.randn(3, size, size, generator=generator)
        side, radius = size // 3, size // 6
        sy, sx = (int(v) for v in torch.randint(0, size // 2 - side // 2, (2,), generator=generator))
        cy, cx = (size - radius - 2 - int(v) for v in torch.randint(0, size // 4, (2,), generator=generator))
        square = (yy >= sy) & (yy < sy + side) & (xx >= sx) & (xx < sx + side)
        disk = ((yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2) & ~square
        image[:, square] = torch.tensor([1.5, -1.0, -1.0])[:, None]
        image[:, disk] = torch.tensor([-1.0, -0.8, 1.5])[:, None]
        for text, mask in zip(EXPRESSIONS, (square, disk)):
            images.append(image)
            texts.append(text)
            targets.append(mask.long())
    return torch.stack(images), texts, torch.stack(targets)


def mean_iou(logits: torch.Tensor, target: torch.Tensor) -> float:
    pred = logits.argmax(1).bool()
    truth = target.bool()
    inter = (pred & truth).flatten(1).sum(1).float()
    union = (pred | truth).flatten(1).sum(1).float().clamp_min(1.0)
    return float((inter / union).mean())


def run(config_path: Path, steps: int, every: int) -> None:
    from rrsis_geo.models import build_model, tokenize
    from training.config import load_config
    from training.losses import ReferringSegmentationLoss
    from training.modeling import load_model_tokenizer, resolve_model_config

    cfg = load_config(config_path)
    model_config = resolve_model_config(cfg["model"])
    size = int(model_config["input_size"])
    torch.manual_seed(cfg["seed"])
    model = build_model(model_config)
    tokens = tokenize(load_model_tokenizer(model_config), list(samples(size)[1]), int(model_config["max_tokens"]))
    images, _, target = samples(size)
    criterion = ReferringSegmentationLoss(**cfg["loss"])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=float(cfg["optim"]["lr"]))
    print(f"\n{config_path.name}: preset {cfg['model']['preset']}, {size} px, lr {cfg['optim']['lr']}, {steps} steps")
    started = time.time()
    for step in range(steps + 1):
        if step % every == 0 or step == steps:
            model.eval()
            with torch.no_grad():
                iou = mean_iou(model(images, tokens.input_ids, tokens.attention_mask), target)
            model.train()
        model.train()
        out = model.forward_train(images, tokens.input_ids, tokens.attention_mask)
        loss, parts = criterion(out, target)
        if step % every == 0 or step == steps:
            detail = ", ".join(f"{k} {v.item():.4f}" for k, v in parts.items())
            print(f"step {step:4d}: loss {loss.item():.4f} ({detail}); mIoU {100 * iou:.1f}  [{time.time() - started:.0f} s]")
        if step == steps:
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", type=Path, default=CONFIGS, help="tiny training configs")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for path in args.configs:
        run(path, args.steps, args.every)
    return 0


if __name__ == "__main__":
    sys.exit(main())
