"""Training items that teach more than one triplet: negatives, dense category targets, augmentation.

Our builder cuts every crop into several triplets (``crops.json`` lists them per crop) but never
asks for a category that is absent from the crop: a model trained on its triplets alone learns
that whatever is asked for is there ("water" on a golf course, "car" on a bus). This view over a
RefSegRS-format training split adds what the crops imply:

* **negatives** (``negatives``: their share of the items): the crop's image with the phrasing of
  a category of the same source that the crop does not hold, and an empty target. The category is
  drawn in proportion to how often it occurs. That alone does not keep a rare category from being
  taught mostly as absent: it is the one most crops lack, so most negatives fall on it (measured
  on the combined set at 25 % negatives, per epoch: trucks 25, minibuses 5.8, heavy-duty
  vehicles 1.9, buses 1.4 negatives per positive triplet, cars none). ``negatives_cap`` keeps each category's expected negatives at most that
  many times its positives (a drawn negative of a category over its cap stays the positive item);
* **dense targets**: per crop, the mask of every category of its source (the builder's plain
  category triplet where the crop holds it; empty where it does not, the source being labelled
  completely: every Dubai pixel, every vehicle), for a per-category auxiliary loss; categories of
  other sources are unknown for the crop and carry no loss;
* **augmentation** (:mod:`training.augment`) of image, target and dense targets together, limited
  by what the item's expression says.

The triplets of a crop share one image, and an item reads several masks: decoded images are kept
per crop and masks per sample, bit-packed (about 0.2 MB per crop and 8 kB per mask at 256 px), so
that after the first epoch an item costs its augmentation only.

Items carry ``text_index``: the sample whose tokens (or cached text embedding) to use (another
sample's for a negative).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from rrsis_geo.errors import InputError

from ..augment import Augmentation, invariance
from .base import ReferringDataset
from .transforms import normalize, resize_image, resize_mask

#: templates of a triplet that asks for a whole category (its mask is the category's mask)
CATEGORY_TEMPLATE = "category"


@dataclass(frozen=True)
class CropTable:
    """Which samples share a crop, and which one is each category's plain triplet there."""

    crop_of: List[int]  # sample index -> crop number
    source_of_crop: List[str]
    category_sample: List[Dict[str, int]]  # crop number -> {category: index of its plain category triplet}
    categories: List[str]  # every category, in a fixed order (the dense targets' channels)
    source_categories: Dict[str, List[str]]  # source -> its categories

    @classmethod
    def read(cls, root: Path, dataset: ReferringDataset) -> "CropTable":
        path = Path(root) / "crops.json"
        try:
            crops = json.loads(path.read_text(encoding="utf-8"))["crops"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(
                f"{path} is missing or unreadable ({exc}); negatives and dense targets need the builder's crops.json"
            ) from exc
        index_of = {sample.key: i for i, sample in enumerate(dataset.samples)}
        crop_of = [-1] * len(dataset.samples)
        sources: List[str] = []
        category_sample: List[Dict[str, int]] = []
        for crop in crops:
            members = [(index_of[s["id"]], s) for s in crop.get("samples", []) if s.get("id") in index_of]
            if not members:
                continue
            number = len(sources)
            sources.append(str(crop.get("source")))
            plain: Dict[str, int] = {}
            for index, record in members:
                crop_of[index] = number
                if record.get("template") == CATEGORY_TEMPLATE and record.get("category") and record["category"] not in plain:
                    plain[record["category"]] = index
            category_sample.append(plain)
        orphans = sum(1 for c in crop_of if c < 0)
        if orphans:
            raise InputError(f"{orphans} samples of {path.parent} are in no crop of crops.json; rebuild the data set")
        by_source: Dict[str, List[str]] = {}
        for source, plain in zip(sources, category_sample):
            names = by_source.setdefault(source, [])
            names.extend(c for c in plain if c not in names)
        categories = sorted({c for names in by_source.values() for c in names})
        return cls(crop_of, sources, category_sample, categories, {s: sorted(n) for s, n in by_source.items()})


def expected_negatives(crops: "TrainingCrops") -> Tuple[Dict[Tuple[str, str], float], Dict[Tuple[str, str], int]]:
    """Per (source, category): the negatives an epoch over the split is expected to draw (before
    any cap), and the positives (the category's triplets)."""
    negatives: Dict[Tuple[str, str], float] = {}
    positives: Dict[Tuple[str, str], int] = {}
    items_of_crop: Dict[int, int] = {}
    for index, sample in enumerate(crops.base.samples):
        crop = crops.table.crop_of[index]
        key = (crops.table.source_of_crop[crop], sample.category)
        positives[key] = positives.get(key, 0) + 1
        items_of_crop[crop] = items_of_crop.get(crop, 0) + 1
    for crop, items in items_of_crop.items():  # a crop's items share its absent categories
        source = crops.table.source_of_crop[crop]
        absent = crops.absent_weights(crop)
        total = sum(absent.values())
        for category, weight in absent.items():
            negatives[(source, category)] = negatives.get((source, category), 0.0) + items * crops.negatives * weight / total
    return negatives, positives


def negative_keep(crops: "TrainingCrops", cap: float) -> Dict[Tuple[str, str], float]:
    """Per (source, category), the share of its drawn negatives to keep so that its expected
    negatives are at most ``cap`` times its positives."""
    negatives, positives = expected_negatives(crops)
    return {key: min(1.0, cap * positives.get(key, 0) / expected) for key, expected in negatives.items() if expected > 0}


class TrainingCrops(Dataset):
    """A training split as items with negatives, dense targets and augmentation (module docstring)."""

    def __init__(
        self,
        dataset: ReferringDataset,
        root: Path,
        *,
        negatives: float = 0.0,
        negatives_cap: Optional[float] = None,
        dense: bool = False,
        augment: Optional[Augmentation] = None,
        seed: int = 0,
    ) -> None:
        if not 0.0 <= negatives < 1.0:
            raise InputError(f"data.negatives is the share of negative items, in [0, 1); got {negatives}")
        self.base = dataset
        self.table = CropTable.read(root, dataset)
        self.negatives = float(negatives)
        self.dense = bool(dense)
        self.augment = augment
        self.seed = int(seed)
        self.epoch = 0
        if negatives_cap is not None and not negatives_cap >= 0:
            raise InputError(f"data.negatives_cap is a number of negatives per positive, >= 0; got {negatives_cap}")
        self._plain_by_category = self._plain_triplets()
        #: (source, category) -> probability that a drawn negative of it is kept (1 without a cap)
        self.negative_keep = negative_keep(self, negatives_cap) if negatives_cap is not None else {}
        self._images: Dict[int, np.ndarray] = {}  # crop -> uint8 [3, S, S]
        self._masks: Dict[int, Tuple[np.ndarray, Tuple[int, int]]] = {}  # sample -> packed bits, shape

    # the sampler and the trainer see the base split's samples
    @property
    def samples(self):
        return self.base.samples

    @property
    def sources(self) -> List[Optional[str]]:
        return self.base.sources

    @property
    def categories(self) -> List[str]:
        return self.table.categories

    def image_width(self, index: int = 0) -> int:
        return self.base.image_width(index)

    def __len__(self) -> int:
        return len(self.base)

    def set_epoch(self, epoch: int) -> None:
        """Each epoch draws other negatives and views (a function of seed, epoch and index)."""
        self.epoch = int(epoch)

    def _plain_triplets(self) -> Dict[Tuple[str, str], List[int]]:
        """(source, category) -> the plain category triplets (their phrasings serve negatives)."""
        out: Dict[Tuple[str, str], List[int]] = {}
        for crop, plain in enumerate(self.table.category_sample):
            source = self.table.source_of_crop[crop]
            for category, index in plain.items():
                out.setdefault((source, category), []).append(index)
        return out

    def absent_weights(self, crop: int) -> Dict[str, int]:
        """The categories of the crop's source it does not hold, each weighted by its frequency."""
        source = self.table.source_of_crop[crop]
        present = self.table.category_sample[crop]
        return {c: len(self._plain_by_category[(source, c)]) for c in self.table.source_categories[source]
                if c not in present}

    def _negative_text(self, crop: int, rng: random.Random) -> Optional[int]:
        """A plain triplet of a category the crop does not hold (same source), drawn by frequency;
        None when there is none, or when the drawn category is over its cap."""
        source = self.table.source_of_crop[crop]
        absent = self.absent_weights(crop)
        if not absent:
            return None
        category = rng.choices(list(absent), weights=list(absent.values()))[0]
        keep = self.negative_keep.get((source, category), 1.0)
        if keep < 1.0 and rng.random() >= keep:
            return None
        return rng.choice(self._plain_by_category[(source, category)])

    def _image(self, index: int, crop: int) -> torch.Tensor:
        """The crop's image, float ``[3, S, S]`` in 0..1 at the input size (kept as uint8)."""
        cached = self._images.get(crop)
        if cached is None:
            image = resize_image(torch.from_numpy(self.base.load_image(self.base.samples[index])), self.base.input_size)
            cached = (image.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
            self._images[crop] = cached
        return torch.from_numpy(cached).float() / 255.0

    def _mask(self, index: int) -> torch.Tensor:
        """Sample ``index``'s mask at the input size, uint8 ``[S, S]``."""
        cached = self._masks.get(index)
        if cached is None:
            mask = torch.from_numpy(self.base.load_mask(self.base.samples[index])).to(torch.uint8)
            mask = resize_mask(mask, self.base.input_size).numpy().astype(bool)
            cached = (np.packbits(mask), mask.shape)
            self._masks[index] = cached
        bits, shape = cached
        return torch.from_numpy(np.unpackbits(bits, count=shape[0] * shape[1]).reshape(shape))

    def _dense_targets(self, crop: int, size: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """``[K, S, S]`` uint8 masks of every category and ``[K]`` bool: known for this crop."""
        source = self.table.source_of_crop[crop]
        own = set(self.table.source_categories[source])
        plain = self.table.category_sample[crop]
        masks = torch.zeros(len(self.table.categories), size, size, dtype=torch.uint8)
        known = torch.zeros(len(self.table.categories), dtype=torch.bool)
        for k, category in enumerate(self.table.categories):
            if category not in own:
                continue
            known[k] = True
            if category in plain:
                masks[k] = self._mask(plain[category])
        return masks, known

    def __getitem__(self, index: int) -> Dict[str, Any]:
        rng = random.Random(hash((self.seed, self.epoch, index)))
        generator = torch.Generator().manual_seed(rng.getrandbits(62))
        base, size = self.base, self.base.input_size
        crop = self.table.crop_of[index]
        text_index = index
        negative = self.negatives > 0 and rng.random() < self.negatives
        if negative:
            text_index = self._negative_text(crop, rng)
            negative = text_index is not None
            text_index = index if text_index is None else text_index
        image = self._image(index, crop)
        target = torch.zeros(size, size, dtype=torch.uint8) if negative else self._mask(index)
        masks = target[None]
        if self.dense:
            dense, known = self._dense_targets(crop, size)
            masks = torch.cat([masks, dense])
        if self.augment is not None:
            image, masks = self.augment(image, masks, invariance(base.samples[text_index].expression), generator)
        item: Dict[str, Any] = {"image": normalize(image, base.mean, base.std), "mask": masks[0].long()}
        if base.input_ids is not None:
            item["input_ids"] = base.input_ids[text_index]
            item["attention_mask"] = base.attention_mask[text_index]
        if self.dense:
            item["dense"] = masks[1:]
            item["dense_known"] = known
        item.update(index=index, text_index=text_index, negative=int(negative),
                    expression=base.samples[text_index].expression, category=base.samples[text_index].category)
        return item

