"""What a trained model knows, for its checkpoint: each category's scale and phrasings.

Written into ``config.json`` as ``scales`` and ``phrasings`` (format: :mod:`rrsis_geo.knowledge`),
from the training split of a data set that records each sample's source GSD and phrasing (our
builder's combined sets). ``gsd_m`` of a category is the median GSD, as the model saw it, of its
training samples, ``min``/``max`` their range; its phrasings are the distinct expressions it was
trained on, most frequent first.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from typing import Any, Dict, List, Sequence

from rrsis_geo.understanding import prepositional_phrases, words

from .datasets.base import Sample
from .datasets.stats import model_gsd

#: phrasings kept per category (what the vocabulary feedback compares with)
MAX_PHRASINGS = 40


def learned_scales(samples: Sequence[Sample], stored_width: int, input_size: int) -> Dict[str, Dict[str, float]]:
    """``{category: {gsd_m, min, max}}`` of the samples that record a GSD (empty if none does)."""
    by_category: Dict[str, List[float]] = defaultdict(list)
    for sample in samples:
        if sample.gsd_m is not None and sample.category:
            by_category[sample.category].append(model_gsd(sample.gsd_m, stored_width, input_size))
    return {
        category: {"gsd_m": round(statistics.median(values), 4), "min": round(min(values), 4), "max": round(max(values), 4)}
        for category, values in sorted(by_category.items())
    }


def learned_phrasings(samples: Sequence[Sample], limit: int = MAX_PHRASINGS) -> Dict[str, List[str]]:
    """``{category: [expression, ...]}``: what each category was asked as in training."""
    counts: Dict[str, Counter] = defaultdict(Counter)
    for sample in samples:
        if sample.category and sample.phrasing != "heldout":
            counts[sample.category][sample.expression] += 1
    return {category: [text for text, _ in counter.most_common(limit)] for category, counter in sorted(counts.items())}


def learned_words(samples: Sequence[Sample]) -> Dict[str, List[str]]:
    """``lexicon`` (every word, plurals folded) and ``phrases`` (every prepositional phrase) of
    the training expressions: what :mod:`rrsis_geo.understanding` holds an expression against
    to say which of its parts the model never learned."""
    lexicon, phrases = set(), set()
    for sample in samples:
        if sample.phrasing == "heldout":
            continue
        lexicon.update(words(sample.expression))
        phrases.update(prepositional_phrases(sample.expression))
    return {"lexicon": sorted(lexicon), "phrases": sorted(phrases)}


def checkpoint_knowledge(samples: Sequence[Sample], stored_width: int, input_size: int) -> Dict[str, Any]:
    """The ``scales``/``phrasings``/``lexicon``/``phrases`` entries for a checkpoint config (only
    what the data records)."""
    out: Dict[str, Any] = {}
    scales = learned_scales(samples, stored_width, input_size)
    if scales:
        out["scales"] = scales
    if any(sample.phrasing is not None for sample in samples):
        out["phrasings"] = learned_phrasings(samples)
    out.update(learned_words(samples))
    return out

