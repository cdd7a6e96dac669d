"""Drawing training samples from several sources in chosen proportions (``data.source_weights``).

A combined data set is unbalanced by construction (thousands of land-cover triplets, a few hundred
vehicle crops): uniform shuffling would show the small source rarely. :class:`SourceMixSampler`
draws each epoch's indices so that source ``s`` makes up ``weights[s] / sum(weights)`` of it
(with replacement inside a source, so a small source can be drawn more often than it has samples),
shared between DDP processes like ``DistributedSampler``: the same seeded order everywhere, every
process taking its own stride of it.

Inside a source, ``category_balance`` (``data.category_balance``) draws rare categories up: a
category is drawn with probability proportional to ``count ** (1 - balance)``, then one of its
triplets uniformly. 0 is a uniform draw over the source's triplets (a category as often as it has
triplets: buses 5 % of the vehicle items, trucks 0.1 %); 1 draws every category equally often.
"""

from __future__ import annotations

from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import torch
from torch.utils.data import Sampler

from rrsis_geo.errors import InputError


class SourceMixSampler(Sampler[int]):
    """Indices of ``num_samples`` draws per epoch, sources in proportion to ``weights``."""

    def __init__(
        self,
        sources: Sequence[str],
        weights: Mapping[str, float],
        *,
        num_samples: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        categories: Optional[Sequence[str]] = None,
        category_balance: float = 0.0,
    ) -> None:
        self.by_source = source_indices(sources)
        if not 0.0 <= float(category_balance) <= 1.0:
            raise InputError(f"data.category_balance is in [0, 1], got {category_balance}")
        if category_balance and categories is None:
            raise InputError("data.category_balance needs each sample's category")
        self.category_balance = float(category_balance)
        # source -> (categories, their draw probabilities, their sample indices)
        self.by_category = {name: category_draw(indices, categories, self.category_balance)
                            for name, indices in self.by_source.items()} if self.category_balance else {}
        unknown = sorted(set(weights) - set(self.by_source))
        if unknown:
            raise InputError(
                f"data.source_weights names {', '.join(unknown)}, which the training split does not have "
                f"(it has {', '.join(sorted(self.by_source))})"
            )
        missing = sorted(set(self.by_source) - set(weights))
        if missing:
            raise InputError(f"data.source_weights gives no weight to {', '.join(missing)}; give every source one (0 leaves it out)")
        if any(float(w) < 0 for w in weights.values()) or sum(float(w) for w in weights.values()) <= 0:
            raise InputError(f"data.source_weights must be >= 0 with a positive sum, got {dict(weights)}")
        self.weights = {name: float(w) for name, w in weights.items()}
        self.num_samples = int(num_samples)
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def epoch_indices(self) -> List[int]:
        """The whole epoch's order (all processes), a function of seed and epoch alone."""
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        names = sorted(self.by_source)
        probabilities = torch.tensor([self.weights[n] for n in names], dtype=torch.float64)
        picks = torch.multinomial(probabilities, self.num_samples, replacement=True, generator=generator)
        order: List[int] = []
        for pick in picks.tolist():
            if self.category_balance:  # a category first, then one of its triplets
                probabilities_c, pools = self.by_category[names[pick]]
                pool = pools[int(torch.multinomial(probabilities_c, 1, generator=generator))]
            else:  # the draw of runs before category_balance existed, unchanged
                pool = self.by_source[names[pick]]
            order.append(pool[int(torch.randint(len(pool), (1,), generator=generator))])
        return order

    def __iter__(self) -> Iterator[int]:
        # every process the same number of samples, or DDP waits forever for the longer one
        usable = len(self) * self.world_size
        return iter(self.epoch_indices()[:usable][self.rank :: self.world_size])

    def __len__(self) -> int:
        return self.num_samples // self.world_size


def category_draw(indices: Sequence[int], categories: Sequence[str], balance: float) -> Tuple[torch.Tensor, List[List[int]]]:
    """Draw probabilities ``count ** (1 - balance)`` of the categories of ``indices``, and each
    category's indices (categories in sorted order)."""
    pools: Dict[str, List[int]] = {}
    for index in indices:
        pools.setdefault(categories[index], []).append(index)
    names = sorted(pools)
    weights = torch.tensor([len(pools[n]) ** (1.0 - balance) for n in names], dtype=torch.float64)
    return weights / weights.sum(), [pools[n] for n in names]


def source_indices(sources: Sequence[str]) -> Dict[str, List[int]]:
    """Sample indices per source name."""
    by_source: Dict[str, List[int]] = {}
    for index, name in enumerate(sources):
        by_source.setdefault(name, []).append(index)
    return by_source
