"""Seeded client sampling: which partitions train and which are evaluated in a round.

A pure function of (seed, round, purpose) and the partitions available, so a resumed run
samples exactly what the uninterrupted run sampled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

TRAIN, EVALUATE = 0, 1


@dataclass(frozen=True)
class Sampling:
    """How many clients a round samples: ``max(floor(fraction * N), minimum)``, at most N."""

    fraction: float = 1.0
    minimum: int = 0

    def size(self, available: int) -> int:
        k = max(math.floor(self.fraction * available + 1e-9), self.minimum, 1)
        return min(k, available)


def sample_partitions(
    available: Sequence[int], sampling: Sampling, seed: int, server_round: int, purpose: int
) -> list[int]:
    """A seeded sample of ``available`` partition ids (sorted)."""
    pool = sorted(available)
    k = sampling.size(len(pool))
    if k == len(pool):
        return pool
    rng = np.random.default_rng([seed, server_round, purpose])
    return sorted(rng.choice(pool, size=k, replace=False).tolist())


@dataclass(frozen=True)
class Rounds:
    """Who takes part: train and evaluation sampling, evaluation cadence, the last round."""

    train: Sampling = field(default_factory=Sampling)
    evaluate: Sampling = field(default_factory=Sampling)
    evaluate_every: int = 1
    last_round: int = 1
    seed: int = 0

    def evaluates(self, server_round: int) -> bool:
        """Whether ``server_round`` runs a federated evaluation."""
        return server_round == self.last_round or server_round % self.evaluate_every == 0
