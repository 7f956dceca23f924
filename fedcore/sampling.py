"""Seeded client sampling: which partitions train and which are evaluated in a round.

Each round orders all N partitions by a permutation drawn from (seed, round, purpose) and
takes the first k that are connected: a resumed run samples exactly what the uninterrupted
run sampled, and a client that is gone changes only its own slot, not everyone's draw.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
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
    partitions: Sequence[int],
    sampling: Sampling,
    seed: int,
    server_round: int,
    purpose: int,
    connected: Collection[int] | None = None,
) -> list[int]:
    """This round's sample (sorted): the first ``sampling.size(N)`` of a seeded permutation
    of all ``partitions`` that are ``connected`` (default: all)."""
    pool = sorted(partitions)
    k = sampling.size(len(pool))
    order = np.random.default_rng([seed, server_round, purpose]).permutation(pool)
    live = [int(p) for p in order if connected is None or p in connected]
    return sorted(live[:k])


@dataclass(frozen=True)
class Rounds:
    """Who takes part: train and evaluation sampling, evaluation cadence, the last round."""

    train: Sampling = field(default_factory=Sampling)
    evaluate: Sampling = field(default_factory=Sampling)
    evaluate_every: int = 1
    last_round: int = 1
    seed: int = 0
    final_clients: int = 0  # the last round evaluates at most this many clients (0: all)

    def evaluates(self, server_round: int) -> bool:
        """Whether ``server_round`` runs a federated evaluation."""
        return server_round == self.last_round or server_round % self.evaluate_every == 0

    def evaluation(self, server_round: int, num_clients: int) -> Sampling:
        """How many clients ``server_round`` evaluates: its sampling, and in the last round
        every client, or a seeded sample of ``final_clients`` of a larger federation."""
        if server_round != self.last_round:
            return self.evaluate
        if self.final_clients == 0 or num_clients <= self.final_clients:
            return Sampling(1.0)
        return Sampling(0.0, self.final_clients)
