"""Shapes the picks were not tuned on: every pick so far comes from one federation shape
(100 clients, 10 per round, 5 local epochs, 50 rounds). Here the recommended methods and
their bases (X and zdas+X, at the held-out settings of ``benchmarks.heldout``) run on three
other shapes, #C=2, seeds 0-2. The shapes were fixed (and committed) before any cell ran:

- ``few``: 20 clients, half of them per round, 5 local epochs, 30 rounds;
- ``one-epoch``: the FMNIST-100 federation with 1 local epoch;
- ``full``: 10 clients, all of them every round, 1 local epoch, 30 rounds (where a large
  FedLC tau may be a per-setting recipe rather than a default).

Target: adding ZDAS never leaves a base below it (paired by seed: last-10 accuracy and
worst-10 %). Cells run through the core loop in reproducible mode, one at a time, each
saved at once in ``benchmarks/results/shapes/``:

    FEDZDA_REPRODUCIBLE=1 .venv/bin/python -m benchmarks.shapes [--cell NAME] [--list]
    .venv/bin/python -m benchmarks.shapes --report    # shapes.md
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from benchmarks.harness import Cell, CellSet, main
from benchmarks.heldout import SETTINGS
from benchmarks.report import last10, signed
from benchmarks.yardstick import PARTITIONS

METHOD_KEYS = ("zdas.share_label_counts=true zdas.samples_per_client=50 "
               "zdas.inversion.warm_steps=2 zdas.replay_per_class=64")  # fmt: skip
SHAPES = {  # name -> (clients, rounds, run-config keys of the shape)
    "few": (20, 30, "train.local_epochs=5 server.fraction_train=0.5 "
            "server.fraction_evaluate=0.5 server.evaluate_every=5"),
    "one-epoch": (100, 50, "train.local_epochs=1 server.fraction_train=0.1 "
                  "server.fraction_evaluate=0.1 server.evaluate_every=5"),
    "full": (10, 30, "train.local_epochs=1 server.fraction_train=1.0 "
             "server.fraction_evaluate=1.0 server.evaluate_every=5"),
}  # fmt: skip
PAIRS = (("fedlc", "zdas+fedlc"), ("scaffold", "zdas+scaffold"))
SEEDS = (0, 1, 2)
# zdas+fedlc at zdas+fedlc's own tuned tau (8); the others as on the held-out seeds
SETTING = {**SETTINGS, "zdas+fedlc": "fedlc.tau=8"}


def cell(shape: str, method: str, seed: int) -> Cell:
    clients, rounds, federation = SHAPES[shape]
    keys = (f"algorithm={method} seed={seed} rounds={rounds} {PARTITIONS['c2']} {federation} "
            f"{METHOD_KEYS} {SETTING[method]} name=shape-{shape}-c2")  # fmt: skip
    row = {"shape": shape, "algorithm": method, "partition": "c2", "seed": seed,
           "setting": SETTING[method]}  # fmt: skip
    return Cell(keys, clients, row)


def cellset() -> CellSet:
    """Shape by shape, seed by seed, each pair together."""
    order = [(sh, m, s) for sh in SHAPES for s in SEEDS for pair in PAIRS for m in pair]
    return CellSet("shapes", {f"{sh}-{m}-c2-s{s}": cell(sh, m, s) for sh, m, s in order},
                   report, reproducible=True)  # fmt: skip


def report(rows: list[dict], results: Path, public: bool) -> None:
    """shapes.md: per shape and pair, zdas+X minus X per seed (last 10, worst-10 %)."""
    lines = ["# Other shapes (#C=2, seeds 0-2; `benchmarks/shapes.py`)", "",
             "Δ: zdas+X minus X, paired by seed. Target: no Δ below 0.", "",
             "| shape | X | X last 10 | zdas+X last 10 | Δ last 10 per seed "
             "| Δ worst-10 % per seed | verdict |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    by = {(r["shape"], r["algorithm"], r["seed"]): r for r in rows}
    for shape, (base, zdas) in itertools.product(SHAPES, PAIRS):
        if not (both := [s for s in SEEDS if (shape, base, s) in by and (shape, zdas, s) in by]):
            continue
        pairs = [(by[shape, base, s], by[shape, zdas, s]) for s in both]
        d = [last10(z) - last10(b) for b, z in pairs]
        w = [z["client_acc_worst10"] - b["client_acc_worst10"] for b, z in pairs]
        ok, plural = "met" if min(d + w) >= 0 else "missed", "s" if len(both) > 1 else ""
        lines.append(
            f"| {shape} | {base} | {np.mean([last10(b) for b, _ in pairs]) * 100:.1f} "
            f"| {np.mean([last10(z) for _, z in pairs]) * 100:.1f} | {signed(d)} | {signed(w)} "
            f"| {ok} ({len(both)} seed{plural}) |"
        )
    (results / "shapes.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main(cellset(), __doc__ or ""))
