"""A benchmark matrix (a yardstick): every method on the same partitions, through `flwr run .`.

A :class:`Yardstick` fixes the federation (clients, sampling, local epochs, rounds) and the
partitions; :func:`main` runs its cells one at a time. Each finished cell is written at once
to the yardstick's cell directory and skipped on the next start, so a matrix can be
completed over several sittings. ``--quick`` is a smoke test of the harness (tiny subset,
2 rounds, its own results directory). ``fmnist10.py`` and ``fmnist100.py`` are the two
yardsticks.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fedcore.config import load_config
from fedcore.datasets import load_dataset
from fedcore.models import build_model
from fedcore.training import TrainConfig, evaluate, train_local
from scripts.simulate import simulate

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
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
        return (
            f"algorithm={algorithm} seed={seed} rounds={rounds} {PARTITIONS[partition]} "
            f"{self.federation} {self.method_overrides} name={self.name}-{partition}"
        )


def run_federated(
    yard: Yardstick, algorithm: str, partition: str, seed: int, rounds: int, quick: bool,
    workdir: Path,
) -> dict:  # fmt: skip
    """One cell through the user path (`flwr run .` on a local simulation SuperLink)."""
    home = workdir / "flwr-home"
    run_dir = workdir / "run"
    shutil.rmtree(run_dir, ignore_errors=True)  # a cell always runs whole, from round 1
    overrides = yard.overrides(algorithm, partition, seed, rounds) + f" output.dir={run_dir}"
    if quick:
        overrides += f" {QUICK}"
    t0 = time.perf_counter()
    proc = simulate(overrides, yard.clients, home)
    (workdir / "flwr.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0 or not (run_dir / "summary.json").is_file():
        raise RuntimeError(f"cell {algorithm}/{partition}/{seed} failed; see {workdir}/flwr.log")
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    last = rows[-1]
    # Inversion time per round: the clients' ZDAC inversions, the server's ZDAS inversions
    # and the server's ZDAC bank.
    inv = [
        r.get("train_inv_seconds", 0.0) * r.get("train_replies", 0)
        + r.get("train_zdas_inv_seconds", 0.0)
        + r.get("train_zdac_bank_seconds", 0.0)
        for r in rows
    ]
    return {
        "algorithm": algorithm,
        "partition": partition,
        "seed": seed,
        "rounds": len(rows),
        "final_accuracy": last["global_accuracy"],
        "best_accuracy": max(r["global_accuracy"] for r in rows),
        "client_acc_mean": last["client_acc_mean"],
        "client_acc_std": last["client_acc_std"],
        "client_acc_worst10": last["client_acc_worst10"],
        "seconds_per_round": float(np.mean([r["round_seconds"] for r in rows])),
        "inversion_seconds_per_round": float(np.mean(inv)),
        "rounds_to_fedavg_final": None,  # filled in by the report from the FedAvg row
        "accuracy_per_round": [r["global_accuracy"] for r in rows],
        "round_seconds": [r["round_seconds"] for r in rows],
        "wall_seconds": time.perf_counter() - t0,
        "run_dir": str(run_dir.relative_to(ROOT)) if run_dir.is_relative_to(ROOT) else str(run_dir),
    }


def run_centralized(yard: Yardstick, rounds: int, quick: bool) -> dict:
    """The ceiling: the same model on the union, each round ``central_epochs`` passes over a
    fresh random ``central_fraction`` of it (a FedAvg round's sample-steps)."""
    cfg = load_config(ROOT / "configs" / "default.toml", QUICK if quick else "")
    s = load_dataset(cfg.data.dataset, cfg.data.path)
    train, test = s.train, s.test
    if quick:
        train, test = train.subset(range(1200)), test.subset(range(400))
    torch.manual_seed(0)
    model = build_model("cnn", 1, 10)
    rng = np.random.default_rng(0)
    n = len(train)
    accs, t0 = [], time.perf_counter()
    for r in range(rounds):
        part = train
        if yard.central_fraction < 1:
            part = train.subset(rng.permutation(n)[: round(yard.central_fraction * n)].tolist())
        train_local(model, part, TrainConfig(local_epochs=yard.central_epochs), seed=r)
        accs.append(float(evaluate(model, test)["accuracy"]))
    sec = (time.perf_counter() - t0) / rounds
    return {
        "algorithm": "centralized",
        "partition": "all",
        "seed": 0,
        "rounds": rounds,
        "final_accuracy": accs[-1],
        "best_accuracy": max(accs),
        "client_acc_mean": None,
        "client_acc_std": None,
        "client_acc_worst10": None,
        "seconds_per_round": sec,
        "inversion_seconds_per_round": 0.0,
        "rounds_to_fedavg_final": None,
        "accuracy_per_round": accs,
    }


def code_version() -> dict:
    """The commit a cell ran from, and the tracked files that differed from it (if any)."""

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else ""

    return {
        "commit": git("rev-parse", "HEAD") or None,
        "modified": git("diff", "--name-only", "HEAD").split(),
    }


def main(yard: Yardstick, doc: str) -> None:
    """The command line of one yardstick: run the missing cells, then rebuild its report."""
    from benchmarks.report import write_report

    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--algorithms", default=",".join((*ALGORITHMS, "centralized")))
    ap.add_argument("--partitions", default=",".join(yard.partitions))
    ap.add_argument("--seeds", default="", help="only these seeds, e.g. 0 (default: all)")
    ap.add_argument("--quick", action="store_true", help="harness smoke test (tiny, 2 rounds)")
    ap.add_argument("--report", action="store_true", help="only rebuild the report from cells")
    ap.add_argument("--results", type=Path, default=None, help="results directory")
    a = ap.parse_args()
    results = a.results or (RESULTS / "quick" / yard.name if a.quick else RESULTS)
    cell_dir = results / yard.cell_dir
    cell_dir.mkdir(parents=True, exist_ok=True)
    rounds = 2 if a.quick else yard.rounds
    if not a.report:
        todo = yard.cells(a.algorithms.split(","), a.partitions.split(","), a.quick)
        if a.seeds:
            todo = [c for c in todo if c[2] in {int(x) for x in a.seeds.split(",")}]
        for alg, part, seed in todo:
            path = cell_dir / f"{alg}-{part}-s{seed}.json"
            if path.is_file():
                print(f"skip {path.name} (done)")
                continue
            print(f"run  {alg} {part} seed {seed} ...", flush=True)
            code = code_version()
            work = results / "work" / yard.cell_dir / path.stem
            work.mkdir(parents=True, exist_ok=True)
            row = (
                run_centralized(yard, rounds, a.quick)
                if alg == "centralized"
                else run_federated(yard, alg, part, seed, rounds, a.quick, work)
            )
            row["code"] = code
            path.write_text(json.dumps(row, indent=2))  # saved at once: resumable per cell
            print(
                f"done {alg} {part} seed {seed}: final {row['final_accuracy']:.4f} "
                f"({row['seconds_per_round']:.1f}s/round)",
                flush=True,
            )
    algs, parts, seeds = yard.extra_seeds
    meta = {
        "dataset": yard.describe.get("dataset"),
        "clients": yard.clients,
        **{k: v for k, v in yard.describe.items() if k != "dataset"},
        "seed": 0,
        "extra_seeds": {"algorithms": list(algs), "partitions": list(parts), "seeds": list(seeds)},
        "rounds": rounds,
        "quick": a.quick,
        "method_overrides": yard.method_overrides,
    }
    every = yard.cells([*ALGORITHMS, "centralized"], list(yard.partitions), a.quick)
    readme = None if a.quick or a.results else ROOT / "README.md"
    write_report(yard, cell_dir, results, meta, [f"{x}-{p}-s{s}" for x, p, s in every], readme)


def mean_of(rows: list[dict], alg: str, part: str, key: str = "final_accuracy") -> float | None:
    """Mean of ``key`` over the rows (seeds) of one algorithm and partition; None if none."""
    vals = [r[key] for r in rows if r["algorithm"] == alg and r["partition"] == part]
    vals = [v for v in vals if v is not None]
    return float(np.mean(vals)) if vals else None
