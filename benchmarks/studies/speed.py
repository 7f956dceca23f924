"""Speed and data-free distillation quality on the yardstick model, measured in one process.

Writes ``benchmarks/results/speed.json`` with:

* ``train_sample_steps_per_s`` / ``inversion_sample_steps_per_s`` / ``inversion_to_train_ratio``
  (batch 32, the CNN);
* ``fedavg_seconds_per_round`` / ``zda_seconds_per_round`` / ``zda_to_fedavg_round_ratio``:
  both through `flwr run .` on Dirichlet 0.1, the same number of rounds, one after the other
  (cold-start rounds included; ``*_warm_*`` keys: from round 3 on, both sides warm);
* ``student_from_synthetic_accuracy``: a fresh CNN trained only on samples inverted from a
  centrally trained teacher, scored on the real test set, for cold-start inversion and for
  amortised inversion (each batch warm-started from the previous batch) at equal compute.

    .venv/bin/python -m benchmarks.studies.speed [--rounds 5] [--samples 2000]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from benchmarks.fmnist10 import FMNIST10
from benchmarks.harness import RESULTS, flower_cell
from benchmarks.studies.inversion_speed import train_throughput
from fedcore.datasets import load_dataset
from fedcore.losses import train_local
from fedcore.models import build_model
from fedcore.provenance import platform_info
from fedcore.training import TrainConfig, evaluate
from inversion import InversionConfig, invert


def distill(x: torch.Tensor, y: torch.Tensor, test, sample_steps: int) -> float:
    """Train a fresh CNN on (x, y) for ``sample_steps`` sample-steps; real test accuracy."""
    torch.manual_seed(0)
    student = build_model("cnn", 1, 10)
    ds = torch.utils.data.TensorDataset(x, y)
    epochs = max(1, round(sample_steps / len(y)))
    train_local(student, ds, TrainConfig(local_epochs=epochs, batch_size=64), seed=0)
    return float(evaluate(student, test)["accuracy"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5, help="rounds timed per method (>= 3)")
    ap.add_argument("--samples", type=int, default=2000, help="cold-start synthetic samples")
    ap.add_argument("--out", type=Path, default=RESULTS / "speed.json")
    a = ap.parse_args()
    if a.rounds < 3:
        ap.error(f"--rounds {a.rounds}: need >= 3 (warm rounds are timed from round 3 on)")
    s = load_dataset("fashion-mnist")
    spec = s.train.spec
    out: dict = {"threads": torch.get_num_threads()}

    model = build_model("cnn", 1, 10)
    # Interleaved repeats, best of each: one slow repeat (a busy core) cannot decide the ratio.
    trains, invs = [], []
    for _ in range(3):
        trains.append(train_throughput(model, s.train, 32, steps=150))
        inv = invert(
            model,
            torch.arange(10).repeat(4)[:32],
            InversionConfig(steps=150, batch_size=32),
            spec,
        )
        invs.append(inv.sample_steps_per_s)
    tr, iv = max(trains), max(invs)
    out |= {
        "batch_size": 32,
        "train_sample_steps_per_s": tr,
        "inversion_sample_steps_per_s": iv,
        "inversion_to_train_ratio": iv / tr,
        "throughput_repeats": {"train": trains, "inversion": invs},
    }
    print(json.dumps(out), flush=True)

    work = RESULTS / "work" / "speed"
    for alg in ("fedavg", "zda"):
        (work / alg).mkdir(parents=True, exist_ok=True)
        cell = dataclasses.replace(FMNIST10, rounds=a.rounds).cell(alg, "dir0.1", 0)
        row = flower_cell(cell, work / alg)
        out[f"{alg}_seconds_per_round"] = row["seconds_per_round"]
        # From round 3 on both sides run warm (ZDAS starts cold in round 1, ZDAC in round 2).
        out[f"{alg}_warm_seconds_per_round"] = sum(row["round_seconds"][2:]) / (a.rounds - 2)
        out[f"{alg}_final_accuracy_after_{a.rounds}_rounds"] = row["final_accuracy"]
    out["rounds_timed"] = a.rounds
    out["zda_to_fedavg_round_ratio"] = (
        out["zda_seconds_per_round"] / out["fedavg_seconds_per_round"]
    )
    out["zda_to_fedavg_warm_round_ratio"] = (
        out["zda_warm_seconds_per_round"] / out["fedavg_warm_seconds_per_round"]
    )
    print(json.dumps(out), flush=True)

    torch.manual_seed(0)
    teacher = build_model("cnn", 1, 10)
    train_local(teacher, s.train, TrainConfig(local_epochs=2), seed=0)
    out["teacher_accuracy"] = float(evaluate(teacher, s.test)["accuracy"])
    cfg = InversionConfig()
    n, cold_steps, warm_steps = a.samples, cfg.steps, cfg.warm_steps
    budget = n * cold_steps  # inversion sample-steps each variant may spend
    labels = torch.arange(10).repeat(n // 10)
    t0 = time.perf_counter()
    cold = invert(teacher, labels, cfg, spec, seed=1)
    cold_s = time.perf_counter() - t0
    # Amortised: a chain of smaller batches, the first from noise, each next one warm-started
    # from the previous batch's samples, until the same inversion budget is spent.
    m = n // 5
    small = torch.arange(10).repeat(m // 10)
    xs, ys, prev, spent, b = [], [], None, 0, 0
    t0 = time.perf_counter()
    while spent + len(small) * (cold_steps if prev is None else warm_steps) <= budget:
        steps = cold_steps if prev is None else warm_steps
        r = invert(
            teacher,
            small,
            cfg,
            spec,
            init=prev,
            steps=steps,
            seed=100 + b,
        )
        spent, prev, b = spent + len(small) * steps, r.x, b + 1
        xs.append(r.x)
        ys.append(r.y)
    amort_s = time.perf_counter() - t0
    x_am, y_am = torch.cat(xs), torch.cat(ys)
    student_steps = 20 * n
    out["student_from_synthetic_accuracy"] = {
        "cold": distill(cold.x, cold.y, s.test, student_steps),
        "amortised": distill(x_am, y_am, s.test, student_steps),
        "cold_samples": len(cold.y),
        "cold_steps": cold_steps,
        "cold_seconds": cold_s,
        "amortised_samples": len(y_am),
        "amortised_batch": len(small),
        "amortised_first_batch_steps": cold_steps,
        "amortised_warm_steps": warm_steps,
        "amortised_seconds": amort_s,
        "student_sample_steps": student_steps,
    }
    out["platform"] = platform_info()
    print(json.dumps(out, indent=2), flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
