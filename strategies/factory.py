"""Strategy by algorithm name."""

from __future__ import annotations

from fedtask.config import ExperimentConfig
from strategies.fedavg import FairFedAvg
from strategies.fedprox import FairFedProx


def build_strategy(cfg: ExperimentConfig) -> FairFedAvg:
    """The server strategy for ``cfg.algorithm``."""
    n, m = cfg.partition.num_partitions, cfg.server.min_train_nodes
    if cfg.algorithm == "fedprox":
        return FairFedProx(n, cfg.fedprox.mu, m)
    return FairFedAvg(n, m)
