"""What a yardstick is: the :class:`Yardstick` record, its methods and partitions, and the
results directory. Imported by the runner (``matrix.py``), the report (``report.py``) and
the yardsticks themselves; it imports none of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
ALGORITHMS = ("fedavg", "fedprox", "scaffold", "zdac", "zdas", "zda")
PARTITIONS = {
    "dir0.5": "partition.name=dirichlet partition.alpha=0.5",
    "dir0.1": "partition.name=dirichlet partition.alpha=0.1",
    "c2": "partition.name=pathological partition.num_classes_per_partition=2",
    "c1": "partition.name=pathological partition.num_classes_per_partition=1",
}
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

    def cells(self, algorithms: list[str], partitions: list[str], quick: bool) -> list[tuple]:
        """(algorithm, partition, seed) for the matrix, filtered."""
        out = [(a, p, 0) for p in self.partitions for a in ALGORITHMS]
        if not quick:
            algs, parts, seeds = self.extra_seeds
            out += [(a, p, s) for s in seeds for p in parts for a in algs]
        out = [c for c in out if c[0] in algorithms and c[1] in partitions]
        if "centralized" in algorithms:
            out += [("centralized", "all", 0)]
        return out

    def overrides(self, algorithm: str, partition: str, seed: int, rounds: int) -> str:
        """The run-config overrides of one cell."""
        return (
            f"algorithm={algorithm} seed={seed} rounds={rounds} {PARTITIONS[partition]} "
            f"{self.federation} {self.method_overrides} name={self.name}-{partition}"
        )


def mean_of(rows: list[dict], alg: str, part: str, key: str = "final_accuracy") -> float | None:
    """Mean of ``key`` over the rows (seeds) of one algorithm and partition; None if none."""
    vals = [r[key] for r in rows if r["algorithm"] == alg and r["partition"] == part]
    vals = [v for v in vals if v is not None]
    return float(np.mean(vals)) if vals else None
