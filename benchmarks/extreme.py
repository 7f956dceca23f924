"""Full participation, extreme skew: does "ZDAS or ZDA" hold against tuned baselines?

The README's advice for every client every round down to one class per client rests on
FMNIST-10 cells against untuned baselines. Here the FMNIST-10 federation (10 clients, all
every round, 1 local epoch, 20 rounds; its ZDAS/ZDA settings) runs #C=1 and #C=2 on seeds
0-2 with FedAvg as the reference, FedLC and SCAFFOLD at their FMNIST-100 picks (tau 16,
lr 0.003: the only tuned values there are, and the issue asks whether they carry over),
ZDAS and ZDA. Fixed (and committed) before any cell ran.

Defaults (issue 33 item 5) on this shape: at #C=2 the knobs whose default and FMNIST-100
pick differ also run at both values, labelled ``method@value``: FedLC tau 1 (default)
against 16 (pick), FedProx mu 0.01 against 0.1, q-FedAvg q 1 against 0.03. Rule, fixed with
them: per knob, the regret of a value in a shape is the better value's last-10 accuracy
minus its own (this shape: the mean over seeds 0-2; the tuning shape: Dirichlet 0.1, seed 0,
``tuning.md``); the default is the value with the smaller largest regret.

Cells run through the core loop in reproducible mode, each saved at once in
``benchmarks/results/extreme/``:

    FEDZDA_REPRODUCIBLE=1 .venv/bin/python -m benchmarks.extreme [--cell NAME] [--list]
    .venv/bin/python -m benchmarks.extreme --report      # extreme.md
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks import tuning
from benchmarks.fmnist10 import FMNIST10
from benchmarks.harness import RESULTS, CellSet, current, main
from benchmarks.heldout import SETTINGS, cell, markdown
from benchmarks.report import last10

SEEDS = (0, 1, 2)
METHODS = ("fedavg", "fedlc", "scaffold", "zdas", "zda")
KNOBS = {  # label -> (algorithm, setting): each knob at its default and at its pick
    "fedlc@1": ("fedlc", "fedlc.tau=1"),
    "fedprox@0.01": ("fedprox", "fedprox.mu=0.01"),
    "fedprox@0.1": ("fedprox", "fedprox.mu=0.1"),
    "qfedavg@1": ("qfedavg", "qfedavg.q=1"),
    "qfedavg@0.03": ("qfedavg", "qfedavg.q=0.03"),
}
# label -> (algorithm, setting): the methods at their picks (fedlc tau 16, scaffold lr 0.003)
LABELS = {m: (m, SETTINGS.get(m, "")) for m in METHODS} | KNOBS
BASELINES = ("fedavg", "fedlc", "scaffold", *KNOBS)
PARTITIONS = {"c1": METHODS, "c2": (*METHODS, *KNOBS)}
# knob -> the method, then its default and its pick: each as (label here, value)
DEFAULTS = {
    "fedlc.tau": ("fedlc", ("fedlc@1", 1), ("fedlc", 16)),
    "fedprox.mu": ("fedprox", ("fedprox@0.01", 0.01), ("fedprox@0.1", 0.1)),
    "qfedavg.q": ("qfedavg", ("qfedavg@1", 1), ("qfedavg@0.03", 0.03)),
}


def regrets(accuracy: list[float]) -> list[float]:
    """Each value's regret: the better value's accuracy minus its own."""
    return [max(accuracy) - a for a in accuracy]


def defaults(rows: list[dict], tuned: dict[str, dict]) -> list[str]:
    """The defaults rule per knob (module docstring): each value's last 10 here (mean over
    the seeds) and in the tuning shape, its regret in each, and the value the rule keeps;
    a knob waits until both values ran on every seed."""
    by = {(r["algorithm"], r["seed"]): r for r in rows if r["partition"] == "c2"}
    lines = ["", "## Defaults", "",
             "Per knob, the value with the smaller largest regret (last 10, points) over this",
             "shape (#C=2, mean of seeds 0-2) and the tuning shape (Dirichlet 0.1, seed 0).", "",
             "| knob | value | last 10 here | last 10 tuning | regret here / tuning | rule |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for knob, (method, *pair) in DEFAULTS.items():
        labels = [label for label, _ in pair]
        trials = [tuning.cell_name(method, knob, value) for _, value in pair]
        if not all((m, s) in by for m in labels for s in SEEDS) or not all(
            t in tuned for t in trials
        ):
            lines.append(f"| {knob} | | waiting for cells | | | |")
            continue
        acc_here = [float(np.mean([last10(by[m, s]) for s in SEEDS])) for m in labels]
        acc_there = [last10(tuned[t]) for t in trials]
        here, there = regrets(acc_here), regrets(acc_there)
        worst = [max(a, b) for a, b in zip(here, there, strict=True)]
        keep = min(range(2), key=lambda i: worst[i])  # ties keep the default
        for i, (_, value) in enumerate(pair):
            role = ("default" if i == 0 else "pick") + (": **kept**" if i == keep else "")
            lines.append(f"| {knob} | {value:g} ({role}) | {acc_here[i]:.4f} | "
                         f"{acc_there[i]:.4f} | "
                         f"{100 * here[i]:.2f} / {100 * there[i]:.2f} | "
                         f"largest {100 * worst[i]:.2f} |")  # fmt: skip
    return lines


def cellset() -> CellSet:
    """Seed by seed, #C=1 first: a seed's cells complete before the next seed."""
    order = [(m, p, s) for s in SEEDS for p, ms in PARTITIONS.items() for m in ms]
    cells = {f"{m}-{p}-s{s}": cell(FMNIST10, m, *LABELS[m], p, s, FMNIST10.rounds)
             for m, p, s in order}  # fmt: skip
    return CellSet("extreme", cells, report, reproducible=True)


def report(rows: list[dict], results: Path, public: bool) -> None:
    head = [f"# Full participation, extreme skew (FMNIST-10, {FMNIST10.rounds} rounds, "
            f"seeds {SEEDS})", "",
            "Settings fixed before the first cell (`benchmarks/extreme.py`). Last 10: mean",
            "global accuracy of the last 10 rounds; client std, worst-10 %: every client in",
            "the last round. Δ: paired by seed to the best inversion-free method (FedAvg,",
            "FedLC at tau 16, SCAFFOLD at lr 0.003, and at #C=2 `method@value`: a knob at",
            "its default and at its FMNIST-100 pick). Generated by",
            "`python -m benchmarks.extreme --report`."]  # fmt: skip
    table = markdown(rows, head, PARTITIONS, BASELINES, SEEDS)
    rule = defaults(rows, current(tuning.cellset(), RESULTS))
    (results / "extreme.md").write_text(table + "\n".join(rule) + "\n")


if __name__ == "__main__":
    raise SystemExit(main(cellset(), __doc__ or ""))
