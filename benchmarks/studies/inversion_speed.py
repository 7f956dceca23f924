"""Inversion cost and quality on the default model, measured in one process.

Prints (a) training vs inversion throughput in sample-steps/s at equal batch size, and
(b) teacher accuracy / BN-statistics loss of cold starts of several lengths and of warm starts
(amortised inversion). A "teacher" is the CNN trained on Fashion-MNIST for one epoch (round
A), then a second epoch (round B): warm starts refine round A's samples against round B's
model, once and twice (two rounds of a pool).

    .venv/bin/python -m benchmarks.studies.inversion_speed [--out FILE.json] [--throughput-only]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from fedcore.datasets import load_dataset
from fedcore.losses import train_local
from fedcore.models import build_model
from fedcore.training import TrainConfig
from inversion import InversionConfig, invert


def train_throughput(model: torch.nn.Module, ds, batch: int, steps: int) -> float:
    """Sample-steps/s of SGD training (forward + backward + step) at ``batch``."""
    sub = ds.subset(range(batch * steps))
    cfg = TrainConfig(batch_size=batch)
    train_local(model, ds.subset(range(batch * 3)), cfg)  # warm-up
    t0 = time.perf_counter()
    train_local(model, sub, cfg)
    return batch * steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="", help="also write the numbers as JSON here")
    ap.add_argument("--throughput-only", action="store_true", help="only part (a)")
    args = ap.parse_args()
    torch.manual_seed(0)
    s = load_dataset("fashion-mnist")
    spec = s.train.spec
    results: dict = {"threads": torch.get_num_threads(), "torch": torch.__version__}

    model = build_model("cnn", 1, 10)
    for batch in (32, 256):
        tr = train_throughput(model, s.train, batch, steps=max(20, 4096 // batch))
        labels = torch.arange(10).repeat(batch // 10 + 1)[:batch]
        inv = invert(
            model,
            labels,
            InversionConfig(steps=30, batch_size=batch),
            spec,
        )
        results[f"batch{batch}"] = {
            "train_sample_steps_per_s": tr,
            "inversion_sample_steps_per_s": inv.sample_steps_per_s,
            "inversion_to_train_ratio": inv.sample_steps_per_s / tr,
        }
        print(
            f"batch {batch:>3}: train {tr:8.0f} sample-steps/s | inversion "
            f"{inv.sample_steps_per_s:8.0f} sample-steps/s | ratio "
            f"{inv.sample_steps_per_s / tr:.2f}"
        )

    if args.throughput_only:
        return save(results, args.out)
    teacher = build_model("cnn", 1, 10)
    train_local(teacher, s.train, TrainConfig(), seed=1)  # round A
    labels = torch.arange(10).repeat(20)
    cfg = InversionConfig()

    def report(name: str, r) -> None:
        results[name] = {
            "teacher_accuracy": r.teacher_accuracy,
            "bn_loss": r.bn_loss_end,
            "seconds": r.seconds,
            "samples": len(labels),
        }
        print(
            f"{name:>22}: teacher acc {r.teacher_accuracy:.3f} | BN loss "
            f"{r.bn_loss_end:6.3f} | {r.seconds:5.1f}s for {len(labels)} samples"
        )

    pools = {}
    for steps in (cfg.steps, 50, 30, 10):  # cold starts of decreasing length, round A's model
        pools[steps] = invert(teacher, labels, cfg, spec, steps=steps, seed=1)
        report(f"cold_{steps}_steps", pools[steps])
    train_local(teacher, s.train, TrainConfig(), seed=2)  # round B: the model moved on
    for cold in (cfg.steps, 30):  # warm refinement against round B's model, twice
        for warm in (10, cfg.warm_steps, 3):
            r1 = invert(teacher, labels, cfg, spec, init=pools[cold].x, steps=warm, seed=3)
            report(f"cold_{cold}+warm_{warm}", r1)
            r2 = invert(teacher, labels, cfg, spec, init=r1.x, steps=warm, seed=4)
            report(f"cold_{cold}+warm_{warm}x2", r2)
    save(results, args.out)


def save(results: dict, out: str) -> None:
    if out:
        with open(out, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
