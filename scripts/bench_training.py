#!/usr/bin/env python3
"""Training throughput of the default's recipe, one lever at a time (figures, never pass/fail).

    PYTHONPATH=. .venv/bin/python scripts/bench_training.py [--batch 8] [--steps 5]

Each row adds one lever to the row above and times full training steps (forward, loss, backward,
AdamW step) of ``lgce-light`` at 256 px on random images and real tokens, median of ``--steps``
after one warm-up step, in one process: one torch thread, fp32, the text encoder in the step (the
previous default's recipe); both cores; channels-last; the text encoder's output from a cache;
EfficientNet's stride-4 stage frozen; bf16 autocast where the CPU has it natively (else the row
says why it is left out). Data loading is not in these figures: ``scripts/ab_training.py``
measures whole runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    import torch

    from rrsis_geo.cpu import native_bf16
    from rrsis_geo.models import tokenize
    from training.modeling import build_training_model, freeze_vision_stages, load_model_tokenizer, resolve_model_config
    from training.text_cache import text_state

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)

    config = resolve_model_config({"preset": "lgce-light", "overrides": {
        "input_size": 256, "decoder": {"hidden": 96}, "language": {"tokens": "sentence", "slots": 8, "noise": 0.5}}})
    tokenizer = load_model_tokenizer(config)
    texts = ["find all the buildings along the road", "cars", "the red car on the left", "water",
             "show me the green areas", "buses", "light-duty vehicles parked in a row", "roads"]
    tokens = tokenize(tokenizer, (texts * args.batch)[: args.batch], 20)

    def measure(threads: int, channels_last: bool, cached: bool, frozen: bool, bf16: bool) -> float:
        torch.manual_seed(0)
        torch.set_num_threads(threads)
        model = build_training_model(config, True)
        for p in model.text_encoder.parameters():
            p.requires_grad_(False)
        stages = freeze_vision_stages(model, 1) if frozen else []
        if channels_last:
            model.to(memory_format=torch.channels_last)
        model.train()
        model.text_encoder.eval()
        for module in stages:
            module.eval()
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        images = torch.randn(args.batch, 3, 256, 256)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        target = (torch.rand(args.batch, 256, 256) > 0.8).long()
        with torch.no_grad():
            words = model.text_encoder(tokens.input_ids, tokens.attention_mask)
            pooled = torch.nn.functional.normalize((words * tokens.attention_mask[..., None]).sum(1)
                                                   / tokens.attention_mask.sum(1, keepdim=True), dim=-1)[:, None]

        def step() -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                if cached:
                    state = text_state(model, pooled, torch.ones(args.batch, 1, dtype=torch.long))
                    logits = model.segment(images, state)
                else:
                    logits = model(images, tokens.input_ids, tokens.attention_mask)
            loss = torch.nn.functional.cross_entropy(logits.float(), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        step()
        times = []
        for _ in range(args.steps):
            started = time.perf_counter()
            step()
            times.append(time.perf_counter() - started)
        return statistics.median(times)

    rows = [
        ("previous recipe: 1 thread, fp32, text encoder in the step", dict(threads=1, channels_last=False, cached=False, frozen=False, bf16=False)),
        ("+ both cores (2 threads)", dict(threads=2, channels_last=False, cached=False, frozen=False, bf16=False)),
        ("+ channels-last", dict(threads=2, channels_last=True, cached=False, frozen=False, bf16=False)),
        ("+ text encoder cached", dict(threads=2, channels_last=True, cached=True, frozen=False, bf16=False)),
        ("+ stride-4 vision stage frozen", dict(threads=2, channels_last=True, cached=True, frozen=True, bf16=False)),
    ]
    if native_bf16():
        rows.append(("+ bf16 autocast", dict(threads=2, channels_last=True, cached=True, frozen=True, bf16=True)))
    print(f"lgce-light at 256 px, batch {args.batch}, median of {args.steps} steps (forward + backward + AdamW)\n")
    print("| recipe | s / step | samples / s | x previous |\n|---|---:|---:|---:|")
    base = None
    for name, settings in rows:
        seconds = measure(**settings)
        base = base or seconds
        print(f"| {name} | {seconds:.2f} | {args.batch / seconds:.2f} | {base / seconds:.2f} |", flush=True)
    if not native_bf16():
        print("\nbf16 autocast left out: this CPU has no native bf16 (no avx512_bf16 / amx_bf16 in /proc/cpuinfo);"
              " torch would emulate it, slower than float32")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
