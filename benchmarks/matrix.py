"""A benchmark matrix (a yardstick): every method on the same partitions, through `flwr run .`.

A :class:`~benchmarks.yardstick.Yardstick` fixes the federation (clients, sampling, local
epochs, rounds) and the partitions; :func:`main` runs its cells one at a time. Each finished
cell is written at once to the yardstick's cell directory and skipped on the next start, so
a matrix can be completed over several sittings. ``--quick`` is a smoke test of the harness
(tiny subset, 2 rounds, its own results directory). ``fmnist10.py`` and ``fmnist100.py`` are
the two yardsticks; ``report.py`` builds their tables and plots.
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
from benchmarks.yardstick import ALGORITHMS, RESULTS, ROOT, Yardstick
from fedcore.config import load_config
from fedcore.datasets import load_dataset
from fedcore.losses import train_local
from fedcore.models import build_model
from fedcore.provenance import platform_info
from fedcore.rundir import recorded_platform
from fedcore.training import TrainConfig, evaluate
from scripts.simulate import simulate

QUICK = (
    "data.train_subset=1200 data.test_subset=400 partition.client_test_size=100 "
    "zdas.samples_per_client=20 zdac.budget=0.05 zdas.inversion.steps=20 "
    "zdac.inversion.steps=20"
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
    platform = recorded_platform(run_dir)
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
        "platform": platform,
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
        "platform": platform_info(),
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
    public = not (a.quick or a.results)  # the committed results: README and docs follow
    report(yard, results, rounds, a.quick, public)


def report(yard: Yardstick, results: Path, rounds: int, quick: bool, public: bool) -> list[dict]:
    """Rebuild the yardstick's report from its cells in ``results``; with ``public``, also
    its blocks in README.md and docs/results.md."""
    algs, parts, seeds = yard.extra_seeds
    meta = {
        "dataset": yard.describe.get("dataset"),
        "clients": yard.clients,
        **{k: v for k, v in yard.describe.items() if k != "dataset"},
        "seed": 0,
        "extra_seeds": {"algorithms": list(algs), "partitions": list(parts), "seeds": list(seeds)},
        "rounds": rounds,
        "quick": quick,
        "method_overrides": yard.method_overrides,
    }
    every = yard.cells([*ALGORITHMS, "centralized"], list(yard.partitions), quick)
    return write_report(
        yard,
        results / yard.cell_dir,
        results,
        meta,
        [f"{x}-{p}-s{s}" for x, p, s in every],
        readme=ROOT / "README.md" if public else None,
        docs=ROOT / "docs" / "results.md" if public else None,
    )
