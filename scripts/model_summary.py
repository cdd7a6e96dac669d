#!/usr/bin/env python
"""Parameter counts of the model presets (random init: no weights are needed or loaded).

    .venv/bin/python scripts/model_summary.py                      # the paper configurations + light
    .venv/bin/python scripts/model_summary.py --presets tiny-lgce  # any presets

Columns: total, vision encoder, text encoder, and everything else (fusion, LGCE, BSC, decoders,
reconstruction head), in millions; trainable excludes a frozen text encoder.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DEFAULT = ["lavt-swinb-bert", "lgce-swinb-bert", "btdnet-swinb-bert", "lgce-light"]


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=DEFAULT, help="preset names (default: %(default)s)")
    args = parser.parse_args(argv)

    from rrsis_geo.models import build_model
    from rrsis_geo.models.presets import preset

    header = f"{'preset':<20} {'arch':<7} {'total':>9} {'vision':>9} {'text':>9} {'fusion+dec':>11} {'trainable':>10}"
    print(header)
    print("-" * len(header))
    for name in args.presets:
        config = preset(name)
        model = build_model(config)  # random init, never downloads
        total = count(model)
        vision, text = count(model.vision_encoder), count(model.text_encoder)
        trainable = total - (text if config["text"].get("frozen") else 0)
        print(
            f"{name:<20} {config['architecture']:<7} {total / 1e6:9.2f} {vision / 1e6:9.2f} {text / 1e6:9.2f} "
            f"{(total - vision - text) / 1e6:11.2f} {trainable / 1e6:10.2f}"
        )
        del model
    print("(millions of parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
