"""RRSIS-D (Liu et al., CVPR 2024) in its refcoco-style layout::

    root/
      rrsisd/refs(unc).p            referred objects: a pickled list of dicts
      rrsisd/instances.json         COCO images, annotations (polygons or RLE), categories
      images/rrsisd/JPEGImages/     the images, named by instances.json's "file_name"

``root`` may also be the ``rrsisd/`` directory itself; the image directory can be given
explicitly. Every sentence of every referred object in the split is one sample; its category is
the referred object's category. The pickle is read with a restricted unpickler that refuses
anything but plain data (see :mod:`training.datasets.safe_pickle`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from rrsis_geo.errors import InputError

from .base import ReferringDataset, Sample
from .coco_masks import decode_segmentation
from .safe_pickle import safe_load
from .transforms import read_rgb

PathLike = Union[str, "os.PathLike[str]"]


def _find_annotation_dir(root: Path, dataset_name: str, split_by: str) -> Path:
    refs_name = f"refs({split_by}).p"
    for candidate in (root, root / dataset_name):
        if (candidate / refs_name).is_file():
            return candidate
    raise InputError(
        f"no {refs_name} in {root} or {root / dataset_name}; an RRSIS-D root holds "
        f"{dataset_name}/{refs_name} and {dataset_name}/instances.json"
    )


def _find_image_dir(root: Path, dataset_name: str, image_dir: Optional[PathLike], probe: str) -> Path:
    candidates = [Path(image_dir)] if image_dir else [
        root / "images" / dataset_name / "JPEGImages",
        root / "JPEGImages",
        root / "images",
        root.parent / "images" / dataset_name / "JPEGImages",
    ]
    for candidate in candidates:
        if (candidate / probe).is_file():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise InputError(f"image {probe!r} not found in {tried}; give the image directory (data.image_dir)")


def _in_split(ref_split: str, split: str) -> bool:
    # as the refcoco API: "test" also covers testA/testB
    return split in ref_split if split == "test" else ref_split == split


class RRSISDDataset(ReferringDataset):
    """Image-expression-mask triplets of one split of RRSIS-D (or any refcoco-style dataset)."""

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
        dataset_name: str = "rrsisd",
        split_by: str = "unc",
        image_dir: Optional[PathLike] = None,
        return_gt: bool = False,
    ):
        self.root = Path(root)
        self.split = split
        ann_dir = _find_annotation_dir(self.root, dataset_name, split_by)
        refs = safe_load(ann_dir / f"refs({split_by}).p")
        instances_path = ann_dir / "instances.json"
        try:
            instances = json.loads(instances_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read {instances_path}: {exc}") from exc
        if not isinstance(refs, list) or not all(isinstance(r, Mapping) for r in refs):
            raise InputError(f"{ann_dir / f'refs({split_by}).p'} is not a list of referred objects")
        try:
            self.images: Dict[Any, Mapping[str, Any]] = {img["id"]: img for img in instances["images"]}
            self.annotations: Dict[Any, Mapping[str, Any]] = {a["id"]: a for a in instances["annotations"]}
            names = {c["id"]: str(c["name"]) for c in instances["categories"]}
        except (KeyError, TypeError) as exc:
            raise InputError(f"{instances_path} lacks COCO images/annotations/categories ({exc})") from exc

        samples: List[Sample] = []
        try:
            for ref in refs:
                if not _in_split(str(ref["split"]), split):
                    continue
                category = names.get(ref.get("category_id"), "other")
                for sentence in ref["sentences"]:
                    text = sentence.get("raw") or sentence.get("sent") or ""
                    if text.strip():
                        samples.append(Sample((ref["image_id"], ref["ann_id"]), text.strip(), category))
        except (KeyError, TypeError, AttributeError) as exc:
            raise InputError(f"a referred object in the refs file lacks a field ({exc})") from exc
        if not samples:
            raise InputError(f"no referred objects with split {split!r} in {ann_dir}")
        self.vocabulary = sorted(set(names.values()))
        first = self.images.get(samples[0].key[0])
        if first is None:
            raise InputError(f"image id {samples[0].key[0]} of the refs file is not in {instances_path}")
        self.image_dir = _find_image_dir(self.root, dataset_name, image_dir, first["file_name"])
        super().__init__(
            samples, tokenizer, input_size=input_size, mean=mean, std=std, max_tokens=max_tokens, return_gt=return_gt
        )

    def _image_info(self, sample: Sample) -> Mapping[str, Any]:
        try:
            return self.images[sample.key[0]]
        except KeyError:
            raise InputError(f"image id {sample.key[0]} is not in instances.json") from None

    def load_image(self, sample: Sample) -> np.ndarray:
        return read_rgb(self.image_dir / self._image_info(sample)["file_name"])

    def load_mask(self, sample: Sample) -> np.ndarray:
        info = self._image_info(sample)
        try:
            annotation = self.annotations[sample.key[1]]
        except KeyError:
            raise InputError(f"annotation id {sample.key[1]} is not in instances.json") from None
        return decode_segmentation(annotation["segmentation"], int(info["height"]), int(info["width"]))
