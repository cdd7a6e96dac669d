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


# vehicles: 90 cars, 9 buses, 1 truck (the shape of the real set: trucks are 0.1 % of it)
CATEGORIES = ["building"] * 900 + ["car"] * 90 + ["bus"] * 9 + ["truck"]


@pytest.mark.parametrize("balance, expected", [(0.0, {"car": 0.90, "bus": 0.09, "truck": 0.01}),
                                               (0.5, None), (1.0, {"car": 1 / 3, "bus": 1 / 3, "truck": 1 / 3})])
def test_category_balance_draws_rare_categories_up(balance, expected):
    sampler = SourceMixSampler(SOURCES, {"dubai": 0.0, "vehicles": 1.0}, num_samples=6000, seed=1,
                               categories=CATEGORIES, category_balance=balance)
    counts = Counter(CATEGORIES[i] for i in sampler)
    shares = {c: counts[c] / 6000 for c in ("car", "bus", "truck")}
    if expected is None:  # between: count ** 0.5 -> 9.5 : 3 : 1
        expected = {c: w / (90 ** 0.5 + 3 + 1) for c, w in (("car", 90 ** 0.5), ("bus", 3), ("truck", 1))}
    for category, share in expected.items():
        assert abs(shares[category] - share) < 0.02, (balance, shares)
    assert {i for i in sampler if CATEGORIES[i] == "truck"} == {999}


def test_no_balance_keeps_the_earlier_draw():
    """Runs made before category_balance existed resume with the same order."""
    plain = SourceMixSampler(SOURCES, {"dubai": 1, "vehicles": 1}, num_samples=50, seed=2)
    zero = SourceMixSampler(SOURCES, {"dubai": 1, "vehicles": 1}, num_samples=50, seed=2,
                            categories=CATEGORIES, category_balance=0.0)
    assert list(plain) == list(zero)


def test_category_balance_is_checked():
    with pytest.raises(InputError, match=r"in \[0, 1\]"):
        SourceMixSampler(SOURCES, {"dubai": 1, "vehicles": 1}, num_samples=10, categories=CATEGORIES, category_balance=1.5)
    with pytest.raises(InputError, match="each sample's category"):
        SourceMixSampler(SOURCES, {"dubai": 1, "vehicles": 1}, num_samples=10, category_balance=0.5)
