"""What robust aggregation adds to a round: the seconds of FedAvg's weighted average and of
each robust rule over one round's replies (10 client models of the FMNIST cnn, ~0.41 M
parameters), measured side by side in one process. A robust composition computes the
average and then its own rule, so its round costs the rule's seconds more than its plain
method's; divide by a round's seconds (``seconds_per_round`` of a cell) for the ratio.

    .venv/bin/python -m benchmarks.studies.aggregation_cost   # results/aggregation_cost.json
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import torch

from benchmarks.yardstick import RESULTS
from fedcore.algorithms.fedavg import weighted_average
from fedcore.models import build_model
from fedcore.provenance import platform_info
from fedcore.robust import coordinate_median, multi_krum, trimmed_mean

CLIENTS, REPEATS = 10, 10


def seconds(f: Callable[[], object]) -> float:
    """Mean seconds of ``f`` over the repeats, after one warm-up call."""
    f()
    t0 = time.perf_counter()
    for _ in range(REPEATS):
        f()
    return (time.perf_counter() - t0) / REPEATS


def main() -> int:
    torch.manual_seed(0)
    model = build_model("cnn", 1, 10)
    base, names = model.state_dict(), [n for n, _ in model.named_parameters()]
    states = [
        {
            k: v + 0.01 * torch.randn(v.shape) if v.is_floating_point() else v
            for k, v in base.items()
        }
        for _ in range(CLIENTS)
    ]
    counts = [60.0] * CLIENTS
    rules = {
        "weighted_average": lambda: weighted_average(states, counts),
        "median": lambda: coordinate_median(states),
        "trimmedmean (trim 0.2)": lambda: trimmed_mean(states, 0.2),
        "krum (f 2, keep 8)": lambda: multi_krum(states, 2, 8, names, counts),
    }
    out = {name: seconds(f) for name, f in rules.items()}
    for name, s in out.items():
        print(f"{name}: {s * 1000:.0f} ms")
    record = {"clients": CLIENTS, "repeats": REPEATS, "seconds": out, "platform": platform_info()}
    (RESULTS / "aggregation_cost.json").write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
