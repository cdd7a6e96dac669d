"""What the RefSegRS and RRSIS-D readers share: tokenisation, transforms, the item layout.

An item is a dict::

    image           float [3, S, S]   resized to the model's input size S, normalised
    mask            long  [S, S]      0/1, resized with nearest neighbour (the training target)
    input_ids       long  [L]         the expression, tokenised with the model's tokenizer
    attention_mask  long  [L]         (both absent when the dataset was made without a tokenizer)
    index           int               position in the dataset
    expression      str
    category        str               for per-category IoU
    gt_mask         bool  [H, W]      only with ``return_gt=True``: the ground truth at its own
                                      resolution, which is what evaluation scores against
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from rrsis_geo.models import tokenize

from .transforms import normalize, resize_image, resize_mask


@dataclass(frozen=True)
class Sample:
    """One image-expression-mask triplet (how to find the image and mask is up to the reader).

    The builder's combined data sets also record, per triplet, its ``source`` (e.g. "dubai",
    "vehicles"), the ``gsd_m`` of the stored image, whether its ``phrasing`` is "seen" in
    training or "heldout", its ``template`` and ``canonical`` meaning; ``None`` where a data set
    does not say (older builds, RefSegRS, RRSIS-D)."""

    key: Any
    expression: str
    category: str
    source: Optional[str] = None
    gsd_m: Optional[float] = None
    phrasing: Optional[str] = None
    template: Optional[str] = None
    canonical: Optional[str] = None


class ReferringDataset(Dataset):
    """Base class: subclasses fill :attr:`samples` and implement :meth:`load_image` / :meth:`load_mask`."""

    def __init__(
        self,
        samples: Sequence[Sample],
        tokenizer: Any,
        *,
        input_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        max_tokens: int = 20,
        return_gt: bool = False,
    ):
        self.samples: List[Sample] = list(samples)
        self.input_size = int(input_size)
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.max_tokens = int(max_tokens)
        self.return_gt = return_gt
        self.input_ids: Optional[torch.Tensor] = None
        self.attention_mask: Optional[torch.Tensor] = None
        if tokenizer is not None and self.samples:
            tokens = tokenize(tokenizer, [s.expression for s in self.samples], self.max_tokens, warn=False)
            self.input_ids, self.attention_mask = tokens.input_ids, tokens.attention_mask
            cut = sum(tokens.truncated)
            if cut:
                warnings.warn(
                    f"{cut} of {len(self.samples)} expressions are longer than {self.max_tokens} tokens "
                    "and were truncated",
                    stacklevel=2,
                )

    # -- to implement -------------------------------------------------------------------------
    def load_image(self, sample: Sample) -> np.ndarray:
        """Float32 ``[3, H, W]`` in 0..1."""
        raise NotImplementedError

    def load_mask(self, sample: Sample) -> np.ndarray:
        """Bool ``[H, W]`` at the ground truth's own resolution."""
        raise NotImplementedError

    # -- shared -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.samples)

    @property
    def categories(self) -> List[str]:
        """Category of every sample, in order."""
        return [s.category for s in self.samples]

    @property
    def sources(self) -> List[Optional[str]]:
        """Source of every sample, in order (``None`` where the data set does not record it), e.g.
        to weight a sampler so that sources are drawn in chosen proportions."""
        return [s.source for s in self.samples]

    def image_width(self, index: int = 0) -> int:
        """Stored width in pixels of the image of sample ``index`` (read from the file)."""
        return int(self.load_image(self.samples[index]).shape[-1])

    def gt_mask(self, index: int) -> np.ndarray:
        """The ground-truth mask of sample ``index`` at its own resolution (bool ``[H, W]``)."""
        return self.load_mask(self.samples[index])

    def __getitem__(self, index: int) -> Dict[str, Any]:
        sample = self.samples[index]
        image = torch.from_numpy(self.load_image(sample))
        gt = torch.from_numpy(self.load_mask(sample))
        item: Dict[str, Any] = {
            "image": normalize(resize_image(image, self.input_size), self.mean, self.std),
            "mask": resize_mask(gt.to(torch.uint8), self.input_size).long(),
        }
        if self.input_ids is not None:
            item["input_ids"] = self.input_ids[index]
            item["attention_mask"] = self.attention_mask[index]
        item.update(index=index, expression=sample.expression, category=sample.category)
        if self.return_gt:
            item["gt_mask"] = gt
        return item


def collate(items: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Stack the tensors of equal shape; keep ``gt_mask`` (sizes differ) and strings as lists."""
    batch: Dict[str, Any] = {}
    for key in items[0]:
        values = [item[key] for item in items]
        if key == "gt_mask" or not isinstance(values[0], (torch.Tensor, int)):
            batch[key] = values
        elif isinstance(values[0], int):
            batch[key] = torch.tensor(values, dtype=torch.long)
        else:
            batch[key] = torch.stack(values)
    return batch
