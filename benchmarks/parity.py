"""Refactoring guard: 3 rounds of fedavg, scaffold and zda at seed 0 through the core round
loop (no Flower), under client sampling, printing every round's metrics and the global
model's test accuracy. Run before and after a change that must not move numbers and diff:

    python -m benchmarks.parity > before.json   # ... change ...
    python -m benchmarks.parity > after.json && diff before.json after.json
"""

from __future__ import annotations

import itertools
import json
import sys

import torch

from fedcore.config import load_config
from fedcore.federation import build_federation
from fedcore.provenance import platform_kind
from fedcore.round import run_rounds
from fedcore.training import evaluate

SMALL = (
    "data.train_subset=3000 data.test_subset=500 partition.client_test_size=50 "
    "server.fraction_train=0.5 zdac.inversion.steps=20 zdas.inversion.steps=20 "
    "zdac.bank_per_class=8 zdas.samples_per_client=30"
)
CLIENTS = 6


def run(algorithm: str, rounds: int = 3) -> list[dict[str, float]]:
    """Per-round metrics of one small run (sorted keys, rounded to 6 digits)."""
    torch.set_num_threads(1)
    cfg = load_config(None, f"algorithm={algorithm} {SMALL}").with_clients(CLIENTS)
    fed = build_federation(cfg)
    if rounds > cfg.rounds:
        raise ValueError(f"rounds: at most the config's {cfg.rounds}, got {rounds}")
    rows = []
    for r in itertools.islice(run_rounds(cfg, fed, torch.device("cpu")), rounds):
        metrics = {k: v for k, v in r.metrics.items() if "seconds" not in k}
        metrics["test-accuracy"] = float(evaluate(r.model, fed.test)["accuracy"])
        rows.append({k: round(float(v), 6) for k, v in sorted(metrics.items())})
    return rows


if __name__ == "__main__":
    names = sys.argv[1:] or ["fedavg", "scaffold", "zda"]
    rows = {n: run(n) for n in names}  # one torch thread from here on
    json.dump({"platform": platform_kind(), **rows}, sys.stdout, indent=1)
    sys.stdout.write("\n")
