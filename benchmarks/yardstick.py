"""What a yardstick is: the :class:`Yardstick` record (fixed federation, partitions, methods
and seeds, its cells) and the centralized ceiling's runner; ``report.py`` makes one a cell
set and builds its tables and plots."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from benchmarks.harness import RESULTS, ROOT, Cell, config_of, flower_cell
from fedcore.datasets import load_dataset
from fedcore.losses import train_local
from fedcore.models import build_model
from fedcore.provenance import platform_info
from fedcore.training import TrainConfig, evaluate

__all__ = ["PARTITIONS", "RESULTS", "ROOT", "Target", "Yardstick", "mean_of"]
ALGORITHMS = ("fedavg", "fedprox", "scaffold", "zdac", "zdas", "zda")
PARTITIONS = {
    "dir0.5": "partition.name=dirichlet partition.alpha=0.5",
    "dir0.1": "partition.name=dirichlet partition.alpha=0.1",
    "c2": "partition.name=pathological partition.num_classes_per_partition=2",
    "c1": "partition.name=pathological partition.num_classes_per_partition=1",
}
QUICK = (
    "data.train_subset=1200 data.test_subset=400 partition.client_test_size=100 "
    "zdas.samples_per_client=20 zdac.budget=0.05 zdas.inversion.steps=20 "
    "zdac.inversion.steps=20"
)
# (label, measured value or None, threshold or None, higher is better)
Target = tuple[str, "float | None", "float | None", bool]


@dataclass(frozen=True)
class Yardstick:
    """One benchmark matrix: fixed federation settings, partitions, methods and seeds."""

    name: str  # file stem of its results: NAME.json, NAME.md, NAME_accuracy.png
    title: str
    clients: int
    rounds: int
    partitions: tuple[str, ...]
    federation: str  # fixed run-config overrides (sampling, local epochs) beyond the defaults
    method_overrides: str  # method settings every cell uses
    extra_seeds: tuple[tuple[str, ...], tuple[str, ...], tuple[int, ...]]  # algs, parts, seeds
    describe: dict = field(default_factory=dict)  # what the fields below do not say
    cell_dir: str = "cells"
    speed_file: str = ""  # a speed benchmark's JSON (in the results directory) it reports
    targets: Callable[[list[dict], dict | None], list[Target]] = lambda rows, speed: []
    central_fraction: float = 1.0  # share of the union one centralized round trains on
    central_epochs: int = 1
    quick: bool = False  # the harness's smoke test: QUICK data, 2 rounds, seed 0 only

    def cells(self) -> list[tuple[str, str, int]]:
        """(algorithm, partition, seed): seed 0 of every method, then the extra seeds."""
        out = [(a, p, 0) for p in self.partitions for a in ALGORITHMS]
        if not self.quick:
            algs, parts, seeds = self.extra_seeds
            out += [(a, p, s) for s in seeds for p in parts for a in algs]
        return [*out, ("centralized", "all", 0)]

    def overrides(self, algorithm: str, partition: str, seed: int, rounds: int) -> str:
        """The run-config overrides of one cell."""
        return (
            f"algorithm={algorithm} seed={seed} rounds={rounds} {PARTITIONS[partition]} "
            f"{self.federation} {self.method_overrides} name={self.name}-{partition}"
        )

    def cell(self, algorithm: str, partition: str, seed: int) -> Cell:
        row = {"algorithm": algorithm, "partition": partition, "seed": seed}
        quick = QUICK if self.quick else ""
        if algorithm == "centralized":
            run = functools.partial(run_centralized, self)
            own = f"centralized cnn fraction={self.central_fraction} epochs={self.central_epochs}"
            return Cell(f"rounds={self.rounds} {quick}", self.clients, row, run, extra=own)
        keys = f"{self.overrides(algorithm, partition, seed, self.rounds)} {quick}"
        return Cell(keys, self.clients, row, flower_cell)

    def meta(self) -> dict:
        """What the report says about the yardstick."""
        (algs, parts, seeds), more = self.extra_seeds, dict(self.describe)
        extra = {"algorithms": list(algs), "partitions": list(parts), "seeds": list(seeds)}
        return {"dataset": more.pop("dataset", None), "clients": self.clients, **more,
                "seed": 0, "extra_seeds": extra, "rounds": self.rounds, "quick": self.quick,
                "method_overrides": self.method_overrides}  # fmt: skip


def run_centralized(yard: Yardstick, cell: Cell, work: Path) -> dict:
    """The ceiling: the same model on the union, each round ``central_epochs`` passes over a
    fresh random ``central_fraction`` of it (a FedAvg round's sample-steps)."""
    cfg = config_of(cell.keys, cell.clients, ROOT / "configs" / "default.toml")
    s = load_dataset(cfg.data.dataset, cfg.data.path)
    train, test = s.train, s.test
    if cfg.data.train_subset:
        train, test = train.subset(range(cfg.data.train_subset)), test.subset(
            range(cfg.data.test_subset))  # fmt: skip
    torch.manual_seed(0)
    model = build_model("cnn", 1, 10)
    rng = np.random.default_rng(0)
    n = len(train)
    accs, t0 = [], time.perf_counter()
    for r in range(cfg.rounds):
        part = train
        if yard.central_fraction < 1:
            part = train.subset(rng.permutation(n)[: round(yard.central_fraction * n)].tolist())
        train_local(model, part, TrainConfig(local_epochs=yard.central_epochs), seed=r)
        accs.append(float(evaluate(model, test)["accuracy"]))
    return {
        "rounds": cfg.rounds, "final_accuracy": accs[-1], "best_accuracy": max(accs),
        **dict.fromkeys(("client_acc_mean", "client_acc_std", "client_acc_worst10")),
        "seconds_per_round": (time.perf_counter() - t0) / cfg.rounds,
        "inversion_seconds_per_round": 0.0, "rounds_to_fedavg_final": None,
        "accuracy_per_round": accs, "platform": platform_info(),
    }  # fmt: skip


def mean_of(rows: list[dict], alg: str, part: str, key: str = "final_accuracy") -> float | None:
    """Mean of ``key`` over the rows (seeds) of one algorithm and partition; None if none."""
    vals = [r[key] for r in rows if r["algorithm"] == alg and r["partition"] == part]
    vals = [v for v in vals if v is not None]
    return float(np.mean(vals)) if vals else None
