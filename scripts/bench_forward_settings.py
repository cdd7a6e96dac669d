#!/usr/bin/env python
"""Which batch size, precision and memory format make the default's forward fastest on this device?

Times the bare forward (``Segmenter.probabilities``, one expression, real tiles of the Dubai
sample) for every combination of ``--batch`` x fp32/bf16 x contiguous/channels-last, in one
run, after a warm-up each. Prints tiles/s per combination and marks the fastest; the library's
per-device defaults (``rrsis_geo/pipeline.py`` ``_default_batch_size``, ``segmenter.py``
``auto_channels_last``) were chosen from this table. Figures only.

    .venv/bin/python scripts/bench_forward_settings.py --device cpu --threads 2
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--seconds", type=float, default=4.0, help="timed seconds per combination")
    args = parser.parse_args()

    import numpy as np
    import rasterio
    import torch

    import rrsis_geo

    torch.set_num_threads(args.threads)
    with rasterio.open(REPO / "resources" / "sample" / "dubai_sample.tif") as src:
        pixels = src.read(out_shape=(3, 512, 512)).astype(np.float32) / 255.0
    rows = []
    for precision, channels_last in itertools.product(("fp32", "bf16"), (False, True)):
        seg = rrsis_geo.load_model(device=args.device, precision=precision, channels_last=channels_last)
        size = seg.input_size
        mean = torch.tensor(seg.card.mean).view(3, 1, 1)
        std = torch.tensor(seg.card.std).view(3, 1, 1)
        tiles = [(torch.from_numpy(pixels[:, r:r + size, c:c + size]) - mean) / std
                 for r in range(0, 512 - size + 1, size // 2) for c in range(0, 512 - size + 1, size // 2)]
        text = seg.encode("building")
        for batch in args.batch:
            images = torch.stack([tiles[k % len(tiles)] for k in range(batch)]).to(seg.device)
            with torch.inference_mode(), seg.autocast():
                for _ in range(2):
                    seg.probabilities(images, text)
                done, started = 0, time.perf_counter()
                while time.perf_counter() - started < args.seconds:
                    seg.probabilities(images, text)
                    done += batch
                if seg.device.type == "cuda":
                    torch.cuda.synchronize()
            rate = done / (time.perf_counter() - started)
            rows.append((precision, "channels-last" if channels_last else "contiguous", batch, rate))
            print(f"{precision} {'channels-last' if channels_last else 'contiguous'} batch {batch}: {rate:.1f} tiles/s",
                  flush=True)
    best = max(rows, key=lambda r: r[3])
    print(f"\n{args.device}, {args.threads} thread(s), {size} px tiles")
    print("| precision | memory format | batch | tiles/s |")
    print("|---|---|---:|---:|")
    for row in rows:
        mark = " **fastest**" if row is best else ""
        print(f"| {row[0]} | {row[1]} | {row[2]} | {row[3]:.1f}{mark} |")


if __name__ == "__main__":
    main()
