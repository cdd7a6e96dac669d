"""RefSegRS (Yuan et al., TGRS 2024) in its published layout, and our builder's output::

    root/
      images/{id}.tif             RGB image
      masks/{id}.tif              uint8 mask, foreground where the value is above 50
      output_phrase_{split}.txt   one triplet per line: "{id} {expression words...}"
      stats.json                  optional (our builder): categories for per-category IoU
                                  (see training.datasets.stats)
      crops.json                  optional (our builder): per triplet its source, GSD, category,
                                  template and seen/held-out phrasing (Sample fields)

Other files (e.g. the builder's georeference sidecars) are ignored.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, List, Optional, Sequence, Union

import numpy as np

from rrsis_geo.errors import InputError

from .base import ReferringDataset, Sample
from .categories import CategoryMatcher, resolve_vocabulary
from .stats import expression_categories, read_stats, sample_fields
from .transforms import find_file, read_mask, read_rgb

PathLike = Union[str, "os.PathLike[str]"]

#: mask values above this are foreground (as the RefSegRS reference loader does)
MASK_THRESHOLD = 50


def read_phrases(path: Path) -> List[tuple]:
    """``[(id, expression), ...]`` from an ``output_phrase_{split}.txt`` file (blank lines skipped)."""
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.strip().split(maxsplit=1)
        if not parts:
            continue
        if len(parts) < 2:
            raise InputError(f"{path}:{number}: expected '<id> <expression>', got {line.strip()!r}")
        pairs.append((parts[0], parts[1]))
    return pairs


class RefSegRSDataset(ReferringDataset):
    """Image-expression-mask triplets of one split of a RefSegRS-format directory."""

    def __init__(
        self,
        root: PathLike,
        split: str,
        tokenizer: Any,
        *,
        input_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        max_tokens: int = 20,
        categories: Optional[Sequence[str]] = None,
        return_gt: bool = False,
    ):
        self.root = Path(root)
        self.split = split
        phrases = self.root / f"output_phrase_{split}.txt"
        if not phrases.is_file():
            raise InputError(
                f"{phrases} does not exist; a RefSegRS-format dataset has images/, masks/ and "
                "output_phrase_{train,val,test}.txt (check --data-root and the split name)"
            )
        for sub in ("images", "masks"):
            if not (self.root / sub).is_dir():
                raise InputError(f"{self.root} has no {sub}/ directory; it is not a RefSegRS-format dataset")
        self.vocabulary = resolve_vocabulary(self.root, categories)
        matcher = CategoryMatcher(self.vocabulary)
        # the builder's own record of each expression's category, unless a vocabulary is imposed
        recorded = {} if categories else expression_categories(read_stats(self.root))
        fields = sample_fields(self.root)
        samples = []
        for key, text in read_phrases(phrases):
            extra = dict(fields.get(key, {}))
            recorded_category = extra.pop("category", None)
            if categories:  # an imposed vocabulary overrides what the builder recorded
                recorded_category = None
            category = recorded_category or recorded.get(text) or matcher(text)
            samples.append(Sample(key, text, category, **extra))
        if not samples:
            raise InputError(f"{phrases} lists no expressions")
        super().__init__(
            samples, tokenizer, input_size=input_size, mean=mean, std=std, max_tokens=max_tokens, return_gt=return_gt
        )

    def load_image(self, sample: Sample) -> np.ndarray:
        return read_rgb(find_file(self.root / "images", sample.key))

    def load_mask(self, sample: Sample) -> np.ndarray:
        return read_mask(find_file(self.root / "masks", sample.key), MASK_THRESHOLD)
