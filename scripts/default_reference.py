"""Reference output of the shipped default model on a fixed input (guards its behaviour).

``python scripts/default_reference.py`` prints the figures; ``--write`` stores them in
``tests/models/data/default_reference.json``, which ``tests/models/test_default_reference.py``
compares against. Rewrite the file only when the default model is *meant* to change (new
weights, new text conditioning), never to make an architectural refactor pass.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Dict

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO / "resources" / "models" / "default"
REFERENCE = REPO / "tests" / "models" / "data" / "default_reference.json"
EXPRESSIONS = ["building along the road", "large water"]
SIZE = 128


def fixed_image(size: int = SIZE) -> torch.Tensor:
    """A deterministic, RNG-free ``[1, 3, size, size]`` normalised-looking image."""
    axis = torch.linspace(0.0, 6.28318, size)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    channels = [torch.sin(3 * x) * torch.cos(2 * y), torch.cos(5 * x + y), torch.sin(x * y / 4)]
    return torch.stack(channels)[None] * 1.5


@torch.no_grad()
def reference_figures(directory: Path = DEFAULT) -> Dict[str, Any]:
    """Logit statistics and an 8x8 pooled target-minus-background map per expression."""
    from rrsis_geo.models import load_checkpoint, load_tokenizer, tokenize

    model, config = load_checkpoint(directory)
    tokenizer = load_tokenizer(directory)
    tokens = tokenize(tokenizer, EXPRESSIONS, int(config["max_tokens"]))
    text = model.encode_text(tokens.input_ids, tokens.attention_mask)
    logits = model.segment(fixed_image().expand(len(EXPRESSIONS), -1, -1, -1), text).float()
    margin = logits[:, 1] - logits[:, 0]
    pooled = F.adaptive_avg_pool2d(margin[:, None], 8)[:, 0]
    return {
        "expressions": EXPRESSIONS,
        "shape": list(logits.shape),
        "mean": logits.mean(dim=(2, 3)).tolist(),
        "std": logits.std(dim=(2, 3)).tolist(),
        "foreground_share": (margin > 0).float().mean(dim=(1, 2)).tolist(),
        "pooled_margin": pooled.tolist(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"store the figures in {REFERENCE.relative_to(REPO)}")
    args = parser.parse_args()
    figures = reference_figures()
    text = json.dumps(figures, indent=1)
    if args.write:
        REFERENCE.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
