"""Refactoring guard: 3 rounds of fedavg, scaffold and zda at seed 0 through the core round
loop (no Flower), under client sampling, printing every round's metrics and the global
model's test accuracy. Run before and after a change that must not move numbers and diff:

    python -m benchmarks.parity > before.json   # ... change ...
    python -m benchmarks.parity > after.json && diff before.json after.json
"""

from __future__ import annotations

import json
import sys

import torch

from fedcore.config import load_config
from fedcore.federation import build_federation
from fedcore.round import build_server, run_round
from fedcore.sampling import TRAIN, Sampling, sample_partitions
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
    model, algo = build_server(cfg, fed.train.spec, torch.device("cpu"))
    state, client_states, rows = model.state_dict(), {}, []
    for rnd in range(1, rounds + 1):
        parts = sample_partitions(range(CLIENTS), Sampling(0.5), cfg.seed, rnd, TRAIN)
        step, metrics = run_round(cfg, algo, fed, state, rnd, parts, client_states, "cpu")
        state = step.state
        model.load_state_dict(state)
        metrics = {k: v for k, v in metrics.items() if "seconds" not in k}
        metrics["test-accuracy"] = float(evaluate(model, fed.test)["accuracy"])
        rows.append({k: round(float(v), 6) for k, v in sorted(metrics.items())})
    return rows


if __name__ == "__main__":
    names = sys.argv[1:] or ["fedavg", "scaffold", "zda"]
    json.dump({n: run(n) for n in names}, sys.stdout, indent=1)
    sys.stdout.write("\n")
