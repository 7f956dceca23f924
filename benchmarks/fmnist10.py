"""The FMNIST-10 yardstick: every method on the same partitions, through `flwr run .`.

Fashion-MNIST (60k/10k), 10 clients, every client every round, the BatchNorm CNN, SGD lr
0.01 momentum 0.9, batch 32, 1 local epoch, 20 rounds, seed 0; partitions Dirichlet 0.5 and
0.1, #C=2, #C=1; methods fedavg, fedprox, scaffold, zdac, zdas, zda, plus centralized
training on the union for the same number of sample-steps; seeds 1 and 2 for fedavg and
zda on dir0.1 and c1.

Each finished cell is written at once to ``benchmarks/results/cells/`` and skipped on the
next start, so the matrix can be completed over several sittings. ``--quick`` is a smoke
test of the harness (tiny subset, 2 rounds, its own results directory).

    .venv/bin/python -m benchmarks.fmnist10 [--algorithms fedavg,zda] [--partitions c1]
    .venv/bin/python -m benchmarks.fmnist10 --report      # rebuild json/md/plots from cells
    .venv/bin/python -m benchmarks.fmnist10 --quick
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.report import write_report
from fedcore.config import load_config
from fedcore.data import load_dataset
from fedcore.models import build_model
from fedcore.training import TrainConfig, evaluate, train_local
from scripts.simulate import simulate

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PARTITIONS = {
    "dir0.5": "partition.name=dirichlet partition.alpha=0.5",
    "dir0.1": "partition.name=dirichlet partition.alpha=0.1",
    "c2": "partition.name=pathological partition.num_classes_per_partition=2",
    "c1": "partition.name=pathological partition.num_classes_per_partition=1",
}
ALGORITHMS = ("fedavg", "fedprox", "scaffold", "zdac", "zdas", "zda")
YARDSTICK = {
    "dataset": "fashion-mnist (60000 train / 10000 test)",
    "clients": 10,
    "participation": "every client every round",
    "model": "cnn (BatchNorm)",
    "optimizer": "SGD lr 0.01 momentum 0.9, batch 32, 1 local epoch",
    "rounds": 20,
    "seed": 0,
    "extra_seeds": {
        "algorithms": ["fedavg", "zda"],
        "partitions": ["dir0.1", "c1"],
        "seeds": [1, 2],
    },
    # Method settings used by every cell (the yardstick's settings above are fixed).
    "method_overrides": "fedprox.mu=0.01 zdas.use_label_counts=true",
}
QUICK = (
    "data.train_subset=1200 data.test_subset=400 partition.client_test_size=100 "
    "zdas.samples_per_client=20 zdac.budget=0.05 zdas.inversion.steps=20 "
    "zdac.inversion.steps=20"
)


def cells(
    algorithms: list[str], partitions: list[str], quick: bool, seeds: list[int] | None = None
) -> list[tuple]:
    """(algorithm, partition, seed) for the matrix, filtered."""
    out = [(a, p, 0) for p in PARTITIONS for a in ALGORITHMS]
    if not quick:
        out += [(a, p, s) for s in (1, 2) for p in ("dir0.1", "c1") for a in ("fedavg", "zda")]
    out = [c for c in out if c[0] in algorithms and c[1] in partitions]
    if seeds is not None:
        out = [c for c in out if c[2] in seeds]
    if "centralized" in algorithms:
        out += [("centralized", "all", 0)]
    return out


def run_federated(
    algorithm: str, partition: str, seed: int, rounds: int, quick: bool, workdir: Path
) -> dict:
    """One cell through the user path (`flwr run .` on a local simulation SuperLink)."""
    home = workdir / "flwr-home"
    run_dir = workdir / "run"
    shutil.rmtree(run_dir, ignore_errors=True)  # a cell always runs whole, from round 1
    overrides = (
        f"algorithm={algorithm} seed={seed} rounds={rounds} "
        f"{PARTITIONS[partition]} {YARDSTICK['method_overrides']} "
        f"name=bench-{partition} output.dir={run_dir}"
    )
    if quick:
        overrides += f" {QUICK}"
    t0 = time.perf_counter()
    proc = simulate(overrides, 10, home)
    out = proc.stdout + proc.stderr
    (workdir / "flwr.log").write_text(out)
    if proc.returncode != 0 or not (run_dir / "summary.json").is_file():
        raise RuntimeError(f"cell {algorithm}/{partition}/{seed} failed; see {workdir}/flwr.log")
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    last = rows[-1]
    # Inversion time spent per round: every client's ZDAC inversion plus the server's ZDAS.
    inv = [
        r.get("train_inv_seconds", 0.0) * r.get("train_replies", 0)
        + r.get("train_zdas_inv_seconds", 0.0)
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


def code_version() -> dict:
    """The commit a cell ran from, and the tracked files that differed from it (if any)."""

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else ""

    return {
        "commit": git("rev-parse", "HEAD") or None,
        "modified": git("diff", "--name-only", "HEAD").split(),
    }


def run_centralized(rounds: int, quick: bool) -> dict:
    """The ceiling: the same model on the union, one epoch per round (= FedAvg's sample-steps)."""
    cfg = load_config(ROOT / "configs" / "default.toml", QUICK if quick else "")
    s = load_dataset(cfg.data.dataset, cfg.data.path)
    train, test = s.train, s.test
    if quick:
        train, test = train.subset(range(1200)), test.subset(range(400))
    torch.manual_seed(0)
    model = build_model("cnn", 1, 10)
    accs, t0 = [], time.perf_counter()
    for r in range(rounds):
        train_local(model, train, TrainConfig(), seed=r)
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--algorithms", default=",".join((*ALGORITHMS, "centralized")))
    ap.add_argument("--partitions", default=",".join(PARTITIONS))
    ap.add_argument("--seeds", default="", help="only these seeds, e.g. 0 (default: all)")
    ap.add_argument("--quick", action="store_true", help="harness smoke test (tiny, 2 rounds)")
    ap.add_argument("--report", action="store_true", help="only rebuild the report from cells")
    ap.add_argument("--results", type=Path, default=None, help="results directory")
    a = ap.parse_args()
    results = a.results or (RESULTS / "quick" if a.quick else RESULTS)
    cell_dir = results / "cells"
    cell_dir.mkdir(parents=True, exist_ok=True)
    rounds = 2 if a.quick else YARDSTICK["rounds"]
    if not a.report:
        seeds = [int(x) for x in a.seeds.split(",")] if a.seeds else None
        todo = cells(a.algorithms.split(","), a.partitions.split(","), a.quick, seeds)
        for alg, part, seed in todo:
            path = cell_dir / f"{alg}-{part}-s{seed}.json"
            if path.is_file():
                print(f"skip {path.name} (done)")
                continue
            print(f"run  {alg} {part} seed {seed} ...", flush=True)
            code = code_version()
            work = results / "work" / path.stem
            work.mkdir(parents=True, exist_ok=True)
            row = (
                run_centralized(rounds, a.quick)
                if alg == "centralized"
                else run_federated(alg, part, seed, rounds, a.quick, work)
            )
            row["code"] = code
            path.write_text(json.dumps(row, indent=2))  # saved at once: resumable per cell
            print(
                f"done {alg} {part} seed {seed}: final {row['final_accuracy']:.4f} "
                f"({row['seconds_per_round']:.1f}s/round)",
                flush=True,
            )
    yard = dict(YARDSTICK, rounds=rounds, quick=a.quick)
    every = cells([*ALGORITHMS, "centralized"], list(PARTITIONS), a.quick)
    readme = None if a.quick or a.results else ROOT / "README.md"
    write_report(cell_dir, results, yard, [f"{x}-{p}-s{s}" for x, p, s in every], readme)


if __name__ == "__main__":
    main()
