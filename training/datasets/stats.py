"""What a dataset directory says about itself beyond the triplets.

Our builder (``training/builder``) writes ``stats.json`` and ``crops.json`` beside the RefSegRS
layout. Read here, all optional:

* ``stats.json["categories"]``: the category vocabulary (list, or mapping keyed by name);
* ``stats.json["vocabulary"]``: ``{"categories", "attributes", "relations": [words],
  "expression_category": {expression: category}}`` (a plain list is taken as the words);
* ``crops.json["crops"][i]``: ``gsd_m`` (ground sample distance of the crop *as written*),
  ``size`` (its pixel size as written) and ``split``.

A model sees the images resized to its input size, so the GSD it was trained at is the stored
GSD times stored size / input size (:func:`model_gsd`).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any, Dict, List, Optional


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError):
        return None


def read_stats(root: Path) -> Dict[str, Any]:
    """``root/stats.json`` as a dict (empty when missing or unreadable)."""
    stats = _read_json(Path(root) / "stats.json")
    return stats if isinstance(stats, dict) else {}


def category_vocabulary(stats: Dict[str, Any]) -> Optional[List[str]]:
    """The category names a dataset declares, if any."""
    categories = stats.get("categories")
    vocabulary = stats.get("vocabulary")
    if not categories and isinstance(vocabulary, dict):
        categories = vocabulary.get("categories")
    if isinstance(categories, dict):
        categories = list(categories)
    if isinstance(categories, list) and categories and all(isinstance(c, str) for c in categories):
        return list(categories)
    return None


def expression_categories(stats: Dict[str, Any]) -> Dict[str, str]:
    """``{expression: category}`` as recorded by the builder (empty if not recorded)."""
    vocabulary = stats.get("vocabulary")
    mapping = vocabulary.get("expression_category") if isinstance(vocabulary, dict) else None
    if isinstance(mapping, dict):
        return {str(k): str(v) for k, v in mapping.items()}
    return {}


def vocabulary_words(stats: Dict[str, Any]) -> List[str]:
    """Category, attribute and relation words, for a checkpoint's ``vocabulary`` (UI completion)."""
    vocabulary = stats.get("vocabulary")
    if isinstance(vocabulary, list):
        return [str(w) for w in vocabulary]
    words: List[str] = []
    if isinstance(vocabulary, dict):
        for key in ("categories", "attributes", "relations"):
            for word in vocabulary.get(key) or []:
                if isinstance(word, str) and word not in words:
                    words.append(word)
    return words or list(category_vocabulary(stats) or [])


def sample_fields(root: Path) -> Dict[str, Dict[str, Any]]:
    """``{sample id: {source, gsd_m, phrasing, template, canonical, category}}`` from the builder's
    ``crops.json`` (only the fields it records; empty for data sets without it). A crop's
    ``source`` and ``gsd_m`` apply to every triplet cut from it."""
    crops = _read_json(Path(root) / "crops.json")
    if not isinstance(crops, dict) or not isinstance(crops.get("crops"), list):
        return {}
    out: Dict[str, Dict[str, Any]] = {}
    for crop in crops["crops"]:
        if not isinstance(crop, dict) or not isinstance(crop.get("samples"), list):
            continue
        shared = {"source": crop.get("source"), "gsd_m": crop.get("gsd_m")}
        for sample in crop["samples"]:
            if isinstance(sample, dict) and isinstance(sample.get("id"), str):
                entry = {**shared, **{k: sample.get(k) for k in ("phrasing", "template", "canonical", "category")}}
                out[sample["id"]] = {k: v for k, v in entry.items() if v is not None}
    return out


def model_gsd(stored_gsd_m: float, stored_width: int, input_size: int) -> float:
    """GSD (m) of what the model saw: images of ``stored_width`` px at ``stored_gsd_m`` resized to ``input_size``."""
    return round(float(stored_gsd_m) * int(stored_width) / int(input_size), 6)


def training_gsd(root: Path, split: str, input_size: int) -> Optional[float]:
    """Median GSD (m) at the model's input of the crops of ``split`` listed in ``crops.json``, if recorded."""
    crops = _read_json(Path(root) / "crops.json")
    if not isinstance(crops, dict) or not isinstance(crops.get("crops"), list):
        return None
    values = []
    for crop in crops["crops"]:
        if not isinstance(crop, dict) or crop.get("split") != split or not isinstance(crop.get("gsd_m"), (int, float)):
            continue
        size = crop.get("size")
        width = size[-1] if isinstance(size, list) and size and isinstance(size[-1], int) else input_size
        values.append(model_gsd(crop["gsd_m"], width, input_size))
    return round(statistics.median(values), 6) if values else None
