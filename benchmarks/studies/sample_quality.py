"""Sample-quality levers of the inversion, measured without Flower in one process.

Two measures on Fashion-MNIST with the yardstick CNN, the teacher trained centrally for two
epochs (as in ``benchmarks/studies/speed.py``):

* **student**: 2000 class-balanced samples inverted from the teacher (one inversion setting
  per row); a fresh CNN trained only on them, with hard labels (``student_ce``, the measure
  of ``speed.json``) and with the teacher's soft labels (``student_kd``, T = 3), scored on
  the real test set.
* **missing classes** (the ZDAC situation): a client holds 1000 real images of each of
  classes 1, 3, 5, 7, 8, 9 and none of 0, 2, 4, 6 (T-shirt, pullover, coat, shirt); it
  inverts the teacher into ZDAC's default budget (10 % of its data, the complement
  allocation: 150 per missing class) and trains a fresh CNN on real + synthetic data for 5
  epochs. Rows are inversion batches of the missing classes only (ZDAC today), the same with
  more steps (equal compute to the next two), class-balanced batches (every class inverted,
  the missing ones kept), and the client's own real images as BatchNorm context.

    .venv/bin/python -m benchmarks.studies.sample_quality [--seeds 2] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from benchmarks.harness import RESULTS
from benchmarks.studies.speed import distill
from fedcore.algorithms.zdac import Synthetic, mix_synthetic
from fedcore.data import ArrayDataset, Splits
from fedcore.datasets import load_dataset
from fedcore.losses import LocalData, Objective, sgd_train, train_local
from fedcore.models import build_model
from fedcore.training import Samples, TrainConfig, evaluate
from inversion import InversionConfig, allocate, invert, labels_for

PRESENT, MISSING = (1, 3, 5, 7, 8, 9), (0, 2, 4, 6)
STUDENT_VARIANTS: dict[str, dict] = {
    "default": {},
    "steps=300": {"steps": 300},
    "lr=0.25": {"lr": 0.25},
    "first_bn_multiplier=1": {"first_bn_multiplier": 1.0},
    "bn=0.1 (relaxed)": {"bn": 0.1},
    "bn=3": {"bn": 3.0},
    "jitter=0": {"jitter": 0},
    "tv_l2=1e-3": {"tv_l2": 1e-3},
}


def fresh_cnn(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("cnn", 1, 10)


def student_scores(teacher, x, y, s: Splits, sample_steps: int) -> dict[str, float]:
    """Hard-label and soft-label students trained on (x, y) only; real test accuracy."""
    out = {"student_ce": distill(x, y, s.test, sample_steps)}  # speed.json's measure
    cfg = TrainConfig(local_epochs=max(1, round(sample_steps / len(y))), batch_size=64)
    with torch.no_grad():
        teacher.eval()
        logits = torch.cat([teacher(x[i : i + 512]) for i in range(0, len(x), 512)])
    kd = fresh_cnn(0)
    sgd_train(kd, Samples(x, y, None, logits), cfg, Objective(0.0, 1.0, 3.0), seed=0)
    out["student_kd"] = float(evaluate(kd, s.test)["accuracy"])
    return out


def client_subset(s: Splits, seed: int, per_class: int = 1000) -> ArrayDataset:
    g = np.random.default_rng(seed)
    y = s.train.y.numpy()
    idx = np.concatenate([g.choice(np.flatnonzero(y == c), per_class, False) for c in PRESENT])
    t = s.train
    return ArrayDataset(t.rows(idx), t.y[idx], t.mean, t.std, t.classes)


def missing_rows(
    teacher, s: Splits, cfg: InversionConfig, seed: int, only: list[str] | None = None
) -> list[dict]:
    """The missing-classes experiment for one seed: one row per way of inverting (``only``:
    the ways whose names start with one of these)."""
    spec = s.train.spec
    real = client_subset(s, seed)
    counts = np.bincount(real.y.numpy(), minlength=10)
    per_class = allocate("complement", counts, 0.1)
    labels = torch.as_tensor(labels_for(per_class))
    # Real context: the client's own images, as many per present class as a full batch holds
    # of each missing class, classes interleaved so every slice stays balanced.
    per_missing = cfg.batch_size // len(MISSING)
    g = torch.Generator().manual_seed(seed)
    pick = [torch.nonzero(real.y == c).flatten() for c in PRESENT]
    pick = [p[torch.randperm(len(p), generator=g)[:per_missing]] for p in pick]
    ctx = real.x[torch.stack(pick, 1).flatten()]
    balanced = torch.as_tensor(labels_for(np.full(10, per_class.max())))
    ways = {
        "real only": None,
        "missing classes only (ZDAC today)": dict(labels=labels),
        "missing classes only, 250 steps": dict(labels=labels, steps=250),
        "bn=0.1 (relaxed)": dict(labels=labels, cfg=replace(cfg, bn=0.1)),
        "class-balanced batches": dict(labels=balanced, keep=True),
        "real images as BN context": dict(labels=labels, context=ctx),
    }
    rows = []
    for name, way in ways.items():
        if only and not any(name.startswith(o) for o in only):
            continue
        t0, syn, bn_end = time.perf_counter(), None, None
        if way is not None:
            r = invert(
                teacher, way["labels"], way.get("cfg", cfg), spec,
                steps=way.get("steps"), context=way.get("context"), seed=seed,
            )  # fmt: skip
            x, y = r.x, r.y
            if way.get("keep"):
                want = torch.isin(y, torch.tensor(MISSING))
                x, y = x[want], y[want]
            syn, bn_end = Synthetic(x, y), r.bn_loss_end
        inv_s = time.perf_counter() - t0
        student = fresh_cnn(seed)
        data = LocalData.real(real) if syn is None else mix_synthetic(LocalData.real(real), syn)
        train_local(student, data, TrainConfig(local_epochs=5), seed=seed)
        ev = evaluate(student, s.test, num_classes=10)
        pc = ev["per_class_accuracy"]
        rows.append({
            "seed": seed, "way": name, "inversion_seconds": round(inv_s, 1),
            "bn_loss_end": bn_end, "accuracy": ev["accuracy"],
            "missing_class_accuracy": float(np.mean([pc[c] for c in MISSING])),
            "present_class_accuracy": float(np.mean([pc[c] for c in PRESENT])),
        })  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    return rows


def tables(out: dict) -> str:
    """The results as two markdown tables (missing-class rows averaged over seeds)."""
    lines = [f"teacher accuracy {out['teacher_accuracy']:.3f}", ""]
    rows = out.get("missing_classes", [])
    if rows:
        lines += [
            "| way | seeds | inversion s | BN loss | accuracy | missing classes | present |",
            "|---|---|---|---|---|---|---|",
        ]
        for way in dict.fromkeys(r["way"] for r in rows):
            mine = [r for r in rows if r["way"] == way]
            bn = [r["bn_loss_end"] for r in mine if r["bn_loss_end"] is not None]
            cells = [np.mean([r[k] for r in mine]) for k in (
                "inversion_seconds", "accuracy", "missing_class_accuracy",
                "present_class_accuracy")]  # fmt: skip
            bn_s = f"{np.mean(bn):.2f}" if bn else "-"
            lines.append(
                f"| {way} | {len(mine)} | {cells[0]:.1f} | {bn_s} | {cells[1]:.3f} | "
                f"{cells[2]:.3f} | {cells[3]:.3f} |"
            )
    if out.get("student"):
        lines += [
            "",
            "| inversion setting | inversion s | BN loss | student (hard labels) | student (KD) |",
            "|---|---|---|---|---|",
        ]
        for r in out["student"]:
            lines.append(
                f"| {r['variant']} | {r['inversion_seconds']:.1f} | {r['bn_loss_end']:.2f} | "
                f"{r['student_ce']:.3f} | {r['student_kd']:.3f} |"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=2, help="seeds of the missing-class rows")
    ap.add_argument("--samples", type=int, default=2000, help="samples of the student rows")
    ap.add_argument("--skip-student", action="store_true", help="only the missing-class rows")
    ap.add_argument("--out", type=Path, default=RESULTS / "sample_quality.json")
    ap.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="inversion settings changed for every row, e.g. jitter=0",
    )
    ap.add_argument("--ways", nargs="*", help="only the missing-class ways starting so")
    ap.add_argument("--variants", nargs="*", help="only these student rows")
    ap.add_argument("--inversion-seed", type=int, default=1, help="seed of the student rows")
    ap.add_argument("--report", action="store_true", help="print the tables of --out; run nothing")
    a = ap.parse_args()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    if a.report:
        print(tables(json.loads(a.out.read_text())))
        return
    s = load_dataset("fashion-mnist")
    teacher = fresh_cnn(0)
    train_local(teacher, s.train, TrainConfig(local_epochs=2), seed=0)
    out: dict = {"teacher_accuracy": float(evaluate(teacher, s.test)["accuracy"])}
    print(json.dumps(out), flush=True)
    base = InversionConfig()
    for kv in a.set:
        key, _, value = kv.partition("=")
        kind = type(getattr(base, key))
        base = replace(base, **{key: value == "true" if kind is bool else kind(value)})
    out |= {"inversion": vars(base), "inversion_seed": a.inversion_seed}
    out["missing_classes"] = [
        row for seed in range(a.seeds) for row in missing_rows(teacher, s, base, seed, a.ways)
    ]
    a.out.write_text(json.dumps(out, indent=2))
    if not a.skip_student:
        labels = torch.arange(10).repeat(a.samples // 10)
        out["student"] = []
        for name, change in STUDENT_VARIANTS.items():
            if a.variants and name not in a.variants:
                continue
            t0 = time.perf_counter()
            cfg = replace(base, **change)
            r = invert(teacher, labels, cfg, s.train.spec, seed=a.inversion_seed)
            row = {
                "variant": name,
                "inversion_seconds": round(time.perf_counter() - t0, 1),
                "bn_loss_end": r.bn_loss_end,
                "teacher_on_samples": r.teacher_accuracy,
            }
            row |= student_scores(teacher, r.x, r.y, s, 20 * a.samples)
            out["student"].append(row)
            print(json.dumps(row), flush=True)
            a.out.write_text(json.dumps(out, indent=2))
    a.out.write_text(json.dumps(out, indent=2))
    print(tables(out))


if __name__ == "__main__":
    main()
