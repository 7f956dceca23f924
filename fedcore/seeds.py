"""Every derived seed of a run, from one rule: ``derive_seed(seed, index, stride)``.

A run has one seed; each random stream (a round's client, a ZDAS inversion, the server's
ZDAC bank, a client's test split) gets a child seed ``seed * stride + index``. The strides
are the values every earlier run used (some streams share one: their seeds can coincide,
harmlessly, as they drive different draws); keep them so that runs stay reproducible.
Stride 1 streams are offsets of their parent seed (the test subset, a training plan's
extra sample sources, a round's leakage report; inside :mod:`inversion`, which imports
nothing of fedcore, a warm inversion's seed is the cold one's + 1). One draw keeps its own
rule: which clients a round samples is numpy's ``default_rng([seed, round, purpose])``
(``fedcore/sampling.py``).
"""

from __future__ import annotations

CLIENT_TEST = 7_919  # per partition: which test images form its own test set
ZDAC_BANK = 7_919  # per round: the server's ZDAC bank inversion
ZDAS_ROUND = 100_003  # per round: ZDAS's inversions and fine-tuning
ZDAS_MODEL = 7_919  # per client model within a ZDAS round
CLIENT_ROUND = 1_000_003  # per round: every client's training shuffles and inversion noise
CLIENT_PARTITION = 1_009  # per partition within a round
ATTACKERS = 104_729  # which clients attack (``attack`` section), once per run
OFFSET = 1  # stride 1: the test subset (index 1), extra sample sources, leakage reports


def derive_seed(seed: int, index: int, stride: int) -> int:
    """The child seed ``seed * stride + index`` of stream ``stride``."""
    return seed * stride + index


def client_seed(seed: int, server_round: int, partition_id: int) -> int:
    """The client's seed for a round (its training shuffles, its inversion noise)."""
    return derive_seed(
        derive_seed(seed, server_round, CLIENT_ROUND), partition_id, CLIENT_PARTITION
    )
