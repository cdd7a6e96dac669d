"""Dataset readers: RefSegRS (and our builder's output) and RRSIS-D, in their on-disk formats."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from rrsis_geo.checkpoint_config import CheckpointConfig
from rrsis_geo.errors import InputError

from .base import ReferringDataset, Sample, collate
from .categories import REFSEGRS_CATEGORIES, CategoryMatcher
from .refsegrs import RefSegRSDataset
from .rrsisd import RRSISDDataset

PathLike = Union[str, "os.PathLike[str]"]

__all__ = [
    "REFSEGRS_CATEGORIES",
    "CategoryMatcher",
    "ReferringDataset",
    "RefSegRSDataset",
    "RRSISDDataset",
    "Sample",
    "build_dataset",
    "collate",
    "detect_format",
]


def detect_format(root: PathLike, split: str, dataset_name: str = "rrsisd", split_by: str = "unc") -> str:
    """``"refsegrs"`` or ``"rrsisd"``, from the files under ``root``."""
    path = Path(root)
    if (path / f"output_phrase_{split}.txt").is_file():
        return "refsegrs"
    refs = f"refs({split_by}).p"
    if (path / refs).is_file() or (path / dataset_name / refs).is_file():
        return "rrsisd"
    if not path.is_dir():
        raise InputError(f"dataset root {path} does not exist")
    raise InputError(
        f"{path} is neither a RefSegRS-format dataset (no output_phrase_{split}.txt) nor an RRSIS-D one "
        f"(no {refs}); check --data-root and --split"
    )


def build_dataset(
    data: Mapping[str, Any],
    split: str,
    tokenizer: Any,
    model_config: Mapping[str, Any],
    *,
    return_gt: bool = False,
    fmt: Optional[str] = None,
) -> ReferringDataset:
    """The dataset a training config's ``data`` section describes, for ``split``.

    Input size, normalisation and token length come from the model config, so that the data
    is prepared exactly as the model will see it at inference.
    """
    root = data.get("root")
    if not root:
        raise InputError("no dataset root: set data.root in the config or pass --data-root")
    fmt = fmt or data.get("format") or detect_format(root, split)
    common = dict(
        input_size=int(model_config["input_size"]),
        mean=model_config["mean"],
        std=model_config["std"],
        max_tokens=int(data.get("max_tokens") or model_config.get("max_tokens") or CheckpointConfig.max_tokens),
        return_gt=return_gt,
    )
    if fmt == "refsegrs":
        return RefSegRSDataset(root, split, tokenizer, categories=data.get("categories"), **common)
    if fmt == "rrsisd":
        return RRSISDDataset(
            root,
            split,
            tokenizer,
            dataset_name=data.get("dataset_name") or "rrsisd",
            split_by=data.get("split_by") or "unc",
            image_dir=data.get("image_dir"),
            **common,
        )
    raise InputError(f"unknown dataset format {fmt!r}; use refsegrs or rrsisd")
