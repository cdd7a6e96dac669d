"""``stats.json``: what a build produced, counted per split, template, category, attribute,
relation and expression, with the foreground-share histogram of the paper's Fig. 7 and the
vocabulary evaluation needs to group results by category."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from training.builder.config import SPLITS, BuilderConfig
from training.builder.relations import RULES

# Fig. 7 of the paper shows most samples under 5 % foreground: fine bins there, coarse above.
FOREGROUND_EDGES = (0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7,
                    0.8, 0.9, 1.0)


def _by_split(samples: Iterable[Mapping[str, Any]], key: str) -> dict[str, dict[str, int]]:
    table: dict[str, Counter] = defaultdict(Counter)
    for sample in samples:
        value = sample.get(key)
        if value is not None:
            table[value][sample["split"]] += 1
    return {value: dict(sorted(counts.items(), key=lambda kv: SPLITS.index(kv[0])))
            for value, counts in table.items()}


def foreground_histogram(samples: Sequence[Mapping[str, Any]], splits: Sequence[str]) -> dict:
    """Histogram of the output masks' foreground share, per split and overall."""
    edges = np.array(FOREGROUND_EDGES)
    result: dict[str, Any] = {"edges": list(FOREGROUND_EDGES), "counts": {}, "mean": {},
                              "median": {}, "share_below_5_percent": {}}
    for split in (*splits, "all"):
        values = np.array([s["foreground_share"] for s in samples
                           if split == "all" or s["split"] == split], dtype=float)
        counts, _ = np.histogram(values, bins=edges)
        result["counts"][split] = counts.tolist()
        if len(values):
            result["mean"][split] = round(float(values.mean()), 5)
            result["median"][split] = round(float(np.median(values)), 5)
            result["share_below_5_percent"][split] = round(float(np.mean(values < 0.05)), 4)
    return result


def describe_config(config: BuilderConfig) -> dict[str, Any]:
    """The settings a build used, for the record."""
    return {
        "classes_file": config.source,
        "name": config.name,
        "encoding": config.encoding,
        "templates": list(config.templates),
        "tiling": vars(config.tiling),
        "filters": vars(config.filters),
        "connectivity": config.connectivity,
        "region_split": {"fractions": dict(config.split.fractions),
                         "block_size": config.split.block_size, "seed": config.split.seed},
        "relations": [{"phrase": r.phrase, "rule": r.rule, "kind": RULES[r.rule].kind,
                       "object": r.object_term, "object_classes": sorted(r.object_classes),
                       "subjects": list(r.subjects), "buffer_m": r.buffer_m,
                       "min_share": r.min_share, "min_contact_m": r.min_contact_m}
                      for r in config.relations],
    }


def summarize(samples: Sequence[Mapping[str, Any]], crops: Sequence[Mapping[str, Any]],
              scenes: Sequence[Mapping[str, Any]], config: BuilderConfig,
              expression_category: Mapping[str, str], dropped: Mapping[str, int],
              seconds: float) -> dict[str, Any]:
    """All of ``stats.json``."""
    splits = [s for s in SPLITS if any(x["split"] == s for x in samples)]
    per_split = {
        split: {
            "triplets": sum(1 for s in samples if s["split"] == split),
            "crops": sum(1 for c in crops if c["split"] == split),
            "scenes": len({c["scene"] for c in crops if c["split"] == split}),
            "expressions": len({s["expression"] for s in samples if s["split"] == split}),
        }
        for split in splits
    }
    return {
        "format": "refsegrs",
        # read by training.datasets (per-category IoU): the category words, most specific last
        "categories": list(config.categories),
        "splits": per_split,
        "totals": {"triplets": len(samples), "crops": len(crops), "scenes": len(scenes),
                   "expressions": len({s["expression"] for s in samples}),
                   "triplets_per_crop": round(len(samples) / max(1, len(crops)), 2)},
        "per_template": _by_split(samples, "template"),
        "per_category": _by_split(samples, "category"),
        "per_attribute": _by_split(samples, "attribute"),
        "per_relation": _by_split(samples, "relation"),
        "per_expression": dict(sorted(_by_split(samples, "expression").items())),
        "foreground_share": foreground_histogram(samples, splits),
        "vocabulary": {**config.vocabulary(), "expression_category": dict(expression_category)},
        "scenes": list(scenes),
        "dropped": dict(dropped),
        "builder": describe_config(config),
        "seconds": round(seconds, 1),
    }
