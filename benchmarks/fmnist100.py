"""The FMNIST-100 yardstick (cross-device): 100 clients, 10 sampled per round.

Its settings are the record below (the report lists them): a seeded permutation picks each
round's clients; federated evaluation samples 10 clients every 5 rounds and every client in
the last round; centralized training takes each round 5 epochs over a fresh random 10 % of
the union (a FedAvg round's sample-steps). Cells in ``benchmarks/results/cells100/``.

    .venv/bin/python -m benchmarks.fmnist100 [--cell 'zda-c2-*'] [--list] [--report]
"""

from __future__ import annotations

import numpy as np

from benchmarks.harness import CellSet, main
from benchmarks.report import as_cellset
from benchmarks.yardstick import Target, Yardstick, mean_of


def round_ratio(rows: list[dict]) -> float | None:
    """ZDA's seconds per round over FedAvg's (cold rounds included), mean over the cells
    that have both (same partition and seed)."""
    fedavg = {(r["partition"], r["seed"]): r for r in rows if r["algorithm"] == "fedavg"}
    ratios = [
        r["seconds_per_round"] / fedavg[(r["partition"], r["seed"])]["seconds_per_round"]
        for r in rows
        if r["algorithm"] == "zda" and (r["partition"], r["seed"]) in fedavg
    ]
    return float(np.mean(ratios)) if ratios else None


def targets(rows: list[dict], speed: dict | None) -> list[Target]:
    """The method issue's FMNIST-100 targets (means over the seeds run)."""

    def fedavg(part: str, key: str, delta: float, scale: float = 1.0) -> float | None:
        v = mean_of(rows, "fedavg", part, key)
        return None if v is None else v * scale + delta

    acc, worst, std = "final_accuracy", "client_acc_worst10", "client_acc_std"
    return [
        ("zda α=0.1 final accuracy ≥ FedAvg's + 0.05", mean_of(rows, "zda", "dir0.1"),
         fedavg("dir0.1", acc, 0.05), True),
        ("zda α=0.1 worst-10% ≥ FedAvg's + 0.10", mean_of(rows, "zda", "dir0.1", worst),
         fedavg("dir0.1", worst, 0.10), True),
        ("zda α=0.1 client std ≤ 0.6 × FedAvg's", mean_of(rows, "zda", "dir0.1", std),
         fedavg("dir0.1", std, 0.0, 0.6), False),
        ("zda #C=2 final accuracy ≥ FedAvg's + 0.05", mean_of(rows, "zda", "c2"),
         fedavg("c2", acc, 0.05), True),
        ("zda_to_fedavg_round_ratio ≤ 1.5 (cold rounds included)", round_ratio(rows), 1.5, False),
    ]  # fmt: skip


FMNIST100 = Yardstick(
    name="fmnist100",
    title="FMNIST-100",
    clients=100,
    rounds=50,
    partitions=("dir0.1", "c2"),
    federation=(
        "train.local_epochs=5 server.fraction_train=0.1 server.fraction_evaluate=0.1 "
        "server.evaluate_every=5"
    ),
    # the cross-device ZDAS settings of the f100-zda-cheap50 trial plus class replay
    # (f100-zda-rep64b; benchmarks/results/levers.md)
    method_overrides=(
        "fedprox.mu=0.01 zdas.share_label_counts=true zdas.samples_per_client=50 "
        "zdas.inversion.warm_steps=2 zdas.replay_per_class=64"
    ),
    extra_seeds=(("fedavg", "zda"), ("dir0.1", "c2"), (1, 2)),
    describe={
        "dataset": "fashion-mnist (60000 train / 10000 test)",
        "participation": "10 sampled per round; federated evaluation of 10 every 5 rounds, "
        "of all 100 in the last round",
        "model": "cnn (BatchNorm)",
        "optimizer": "SGD lr 0.01 momentum 0.9, batch 32, 5 local epochs",
    },
    cell_dir="cells100",
    targets=targets,
    central_fraction=0.1,
    central_epochs=5,
)


def cellset() -> CellSet:
    return as_cellset(FMNIST100)


if __name__ == "__main__":
    raise SystemExit(main(cellset(), __doc__ or ""))
