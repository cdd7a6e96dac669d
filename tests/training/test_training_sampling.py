"""Sources drawn in chosen proportions, the same order on every process."""

from __future__ import annotations

from collections import Counter

import pytest

from rrsis_geo.errors import InputError
from training.sampling import SourceMixSampler

SOURCES = ["dubai"] * 900 + ["vehicles"] * 100


def test_proportions_follow_the_weights_not_the_sizes():
    sampler = SourceMixSampler(SOURCES, {"dubai": 1.0, "vehicles": 1.0}, num_samples=4000, seed=3)
    counts = Counter(SOURCES[i] for i in sampler)
    assert len(sampler) == 4000 and sum(counts.values()) == 4000
    assert 0.45 < counts["vehicles"] / 4000 < 0.55  # 10 % of the samples, half of the draws
    assert len({i for i in sampler if SOURCES[i] == "vehicles"}) > 90  # most of the small source seen


def test_zero_weight_leaves_a_source_out():
    sampler = SourceMixSampler(SOURCES, {"dubai": 0.0, "vehicles": 2.0}, num_samples=300)
    assert {SOURCES[i] for i in sampler} == {"vehicles"}


def test_epochs_differ_and_processes_share_one_order():
    ranks = [SourceMixSampler(SOURCES, {"dubai": 3, "vehicles": 1}, num_samples=11, rank=r, world_size=2, seed=5) for r in range(2)]
    for sampler in ranks:
        sampler.set_epoch(1)
    first, second = list(ranks[0]), list(ranks[1])
    assert len(first) == len(second) == 5  # equal shares, the odd draw dropped
    whole = ranks[0].epoch_indices()
    assert first == whole[0:10:2] and second == whole[1:10:2]
    ranks[0].set_epoch(2)
    assert list(ranks[0]) != first


@pytest.mark.parametrize(
    "weights, message",
    [({"dubai": 1.0}, "no weight to vehicles"), ({"dubai": 1, "vehicles": 1, "roads": 1}, "does not have"),
     ({"dubai": 0, "vehicles": 0}, "positive sum")],
)
def test_bad_weights_are_input_errors(weights, message):
    with pytest.raises(InputError, match=message):
        SourceMixSampler(SOURCES, weights, num_samples=10)
