"""Strategy by algorithm name."""

from __future__ import annotations

from fedtask.config import ExperimentConfig
from fedtask.data import ArrayDataset
from fedtask.models import build_model
from strategies.fedavg import FairFedAvg
from strategies.fedprox import FairFedProx
from strategies.scaffold import ScaffoldFedAvg
from strategies.zdas import ZdasFedAvg


def build_strategy(cfg: ExperimentConfig, train: ArrayDataset) -> FairFedAvg:
    """The server strategy for ``cfg.algorithm`` (``train`` describes inputs and classes)."""
    n, m = cfg.partition.num_partitions, cfg.server.min_train_nodes
    if cfg.algorithm == "scaffold":
        model = build_model(cfg.model.name, train.input_shape[0], train.num_classes)
        names = [n for n, _ in model.named_parameters()]
        return ScaffoldFedAvg(n, names, min_train_nodes=m, max_examples=len(train))
    if cfg.algorithm == "fedprox":
        return FairFedProx(n, cfg.fedprox.mu, m, max_examples=len(train))
    mu = cfg.fedprox.mu if cfg.fedprox.compose_with_zda else 0.0
    if cfg.algorithm in ("zdas", "zda"):
        info = {
            "input_shape": train.input_shape,
            "mean": train.mean,
            "std": train.std,
            "num_classes": train.num_classes,
        }
        return ZdasFedAvg(
            n,
            cfg.zdas,
            lambda: build_model(cfg.model.name, train.input_shape[0], train.num_classes),
            info,
            m,
            mu,
            cfg.seed,
            max_examples=len(train),
        )
    return FairFedAvg(n, m, mu, max_examples=len(train))
