#!/usr/bin/env python
"""Forward throughput (tiles/s) of the model presets, as the inference engine runs them.

The expression is encoded once (``encode_text``) and each batch of tiles goes through
``segment`` -- what ``rrsis_geo.engine`` does per batch -- under autocast (bf16 by default), in
eager mode and, with ``--compile``, also through ``torch.compile``. ``swin-b`` is the bare Swin-B
encoder of the paper presets (four stages, no language), for reference. Weights are random: speed
does not depend on them.

    .venv/bin/python scripts/bench_models.py --device cuda --compile                 # the GPU figures
    .venv/bin/python scripts/bench_models.py --device cpu --batch-size 1 --size 128 --configs tiny-lgce
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DEFAULT_CONFIGS = ["swin-b", "lavt-swinb-bert", "lgce-swinb-bert", "btdnet-swinb-bert"]
BARE_SWIN = "swin-b"
EXPRESSION = "light-duty vehicle in the parking area"


def build_runner(name: str, size: int, device):
    """``(callable(images) -> output, parameter count)`` for a preset or the bare Swin-B encoder."""
    import torch
    from torch import nn

    from rrsis_geo.models import build_model, tokenize
    from rrsis_geo.models.encoders import build_vision_encoder
    from rrsis_geo.models.presets import preset, tokenizer_source
    from rrsis_geo.models.pretrained import resolve_pretrained
    from rrsis_geo.models.tokenizer import load_tokenizer

    config = preset("lavt-swinb-bert" if name == BARE_SWIN else name)
    config["input_size"] = size
    if name == BARE_SWIN:
        encoder = build_vision_encoder(config).to(device).eval()
        return encoder, sum(p.numel() for p in encoder.parameters())

    model = build_model(config).to(device).eval()
    tokenizer = load_tokenizer(resolve_pretrained(tokenizer_source(config)))
    tokens = tokenize(tokenizer, [EXPRESSION], int(config["max_tokens"]))
    with torch.no_grad():
        text = model.encode_text(tokens.input_ids.to(device), tokens.attention_mask.to(device))

    class Segment(nn.Module):
        """``segment`` with the expression fixed, as the engine calls it per batch."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, images):
            return self.model.segment(images, text)

    return Segment().eval(), sum(p.numel() for p in model.parameters())


def measure(runner, images, *, autocast_dtype, device_type: str, warmup: int, iters: int) -> float:
    """Seconds per batch (median of ``iters`` timed calls after ``warmup`` calls)."""
    import torch

    def sync() -> None:
        if device_type == "cuda":
            torch.cuda.synchronize()

    times = []
    with torch.inference_mode(), torch.autocast(device_type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        for _ in range(warmup):
            runner(images)
        sync()
        for _ in range(iters):
            start = time.perf_counter()
            runner(images)
            sync()
            times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if _cuda() else "cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--size", type=int, default=512, help="tile size in px (a multiple of 32)")
    parser.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS, help=f"presets or {BARE_SWIN!r}")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd models")
    parser.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default="bf16", help="autocast dtype")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10)
    args = parser.parse_args(argv)

    import torch

    if args.size % 32:
        parser.error("--size must be a multiple of 32")
    device = torch.device(args.device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[args.dtype]
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        print(f"device: {torch.cuda.get_device_name(device)}")
    print(
        f"torch {torch.__version__}; batch {args.batch_size} x 3 x {args.size} x {args.size}; "
        f"autocast {args.dtype}; median of {args.iters} after {args.warmup} warm-up"
    )
    modes = ["eager", "compile"] if args.compile else ["eager"]
    print(f"{'config':<20} {'params(M)':>9} {'mode':<8} {'s/batch':>9} {'tiles/s':>9} {'peak GiB':>9}")
    for name in args.configs:
        runner, params = build_runner(name, args.size, device)
        images = torch.randn(args.batch_size, 3, args.size, args.size, device=device)
        for mode in modes:
            call = torch.compile(runner) if mode == "compile" else runner
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            try:
                seconds = measure(
                    call, images, autocast_dtype=dtype, device_type=device.type, warmup=args.warmup, iters=args.iters
                )
            except Exception as exc:  # report and go on with the other configurations
                print(f"{name:<20} {params / 1e6:9.1f} {mode:<8} failed: {type(exc).__name__}: {exc}")
                continue
            peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
            print(
                f"{name:<20} {params / 1e6:9.1f} {mode:<8} {seconds:9.4f} {args.batch_size / seconds:9.1f} {peak:9.2f}",
                flush=True,
            )
        del runner, images
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return 0


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    sys.exit(main())
