"""Clients that lie: FedAvg, FedLC and zdas+scaffold, each plain and with its robust
composition, with 20 % of the clients attacking (sign-flip, label-flip, inflated count)
and without attackers, on FMNIST-100 #C=2 (30 rounds, seed 0; the held-out settings of
``benchmarks.heldout``); the targets' cells also on seeds 1 and 2 (added after the seed-0
cells had run, with the same settings). Fixed before any cell ran:

- the robust composition of each method is X+trimmedmean (trim 0.2: a round of 10 replies
  drops 2 at each end, per coordinate); ZDAS's screen is off (its trials, levers.md, left
  out 8-11 % of the honest models);
- an attacker attacks every round it is sampled; the attackers are the same 20 clients in
  every cell (``attack.share=0.2``, seeded by the run).

Targets: with 20 % sign-flip or label-flip attackers the robust composition of the
recommended method loses at most 2 points of last-10 accuracy against its clean run; the
screen leaves out at least 90 % of the attackers' models that were sampled, and at most
5 % of the honest ones; a robust composition costs at most 1.1x its plain method's round
time. Cells run one at a time through the core loop in reproducible mode, each saved at
once in ``benchmarks/results/robustness/``:

    FEDZDA_REPRODUCIBLE=1 .venv/bin/python -m benchmarks.robustness [--cell NAME] [--list]
    .venv/bin/python -m benchmarks.robustness --report    # robustness.md
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.fmnist100 import FMNIST100
from benchmarks.harness import Cell, CellSet, core_run, main
from benchmarks.heldout import SETTINGS
from benchmarks.report import last10, platform_kind_of

ROUNDS, SEED, SHARE, HEADLINE_SEEDS = 30, 0, 0.2, (0, 1, 2)
METHODS = ("fedavg", "fedlc", "zdas+scaffold")
ROBUST, ROBUST_KEYS = "+trimmedmean", "trimmedmean.trim=0.2"  # every method's robust composition
ATTACKS = ("none", "sign_flip", "label_flip", "inflate_count")
# the targets' cells: the recommended robust composition and plain FedAvg, clean and attacked
HEADLINE = [(m, rob, a) for m, rob in (("zdas+scaffold", True), ("fedavg", False))
            for a in ATTACKS[:3]]  # fmt: skip


def cells() -> list[tuple[str, bool, str]]:
    """(method, robust, attack) of the seed-0 table: the targets' cells first, then attack
    by attack."""
    rest = [(m, rob, a) for a in ATTACKS for m in METHODS for rob in (False, True)]
    return HEADLINE + [c for c in rest if c not in HEADLINE]


def order() -> list[tuple[str, bool, str, int]]:
    """The run order: the targets' cells on every seed, then the rest of the seed-0 table."""
    heads = [(*c, s) for s in HEADLINE_SEEDS for c in HEADLINE]
    return heads + [(*c, SEED) for c in cells() if c not in HEADLINE]


def name(method: str, robust: bool, attack: str, seed: int = SEED) -> str:
    return f"{method}{ROBUST if robust else ''}-{attack}-c2-s{seed}"


def keys(method: str, robust: bool, attack: str, seed: int = SEED) -> str:
    base = FMNIST100.overrides(method + (ROBUST if robust else ""), "c2", seed, ROUNDS)
    lie = f"attack.kind={attack} attack.share={SHARE}" if attack != "none" else ""
    return f"{base} {SETTINGS.get(method, '')} {ROBUST_KEYS if robust else ''} {lie}"


def cellset() -> CellSet:
    cells_ = {name(m, rob, a, s): Cell(keys(m, rob, a, s), FMNIST100.clients, {
        "method": m, "robust": rob, "attack": a, "seed": s, "rounds": ROUNDS})
        for m, rob, a, s in order()}  # fmt: skip
    return CellSet("robustness", cells_, report, reproducible=True)


def trial(attack: str, rounds: int) -> dict:
    """A short run of zdas+scaffold's robust composition under ``attack`` (the screen's
    trials in levers.md): the seed, federation and settings of the table's cell."""
    keys_ = keys("zdas+scaffold", True, attack) + f" zdas.screen=3 rounds={rounds}"
    return core_run(keys_, FMNIST100.clients)


def detection(row: dict) -> tuple[float, float] | None:
    """The screen's rates over the run: the share of sampled attackers' models it left out,
    and the share of sampled honest models it left out (None without a screen record)."""
    per = row.get("screen_per_round")
    if not per or "zdas.screen" not in row["command"]:
        return None
    bad = set(row.get("attackers", []))
    hit = [p in r["left_out"] for r in per for p in r["sampled"] if p in bad]
    false = [p in r["left_out"] for r in per for p in r["sampled"] if p not in bad]
    return (float(np.mean(hit)) if hit else float("nan"), float(np.mean(false)))


def report(rows: list[dict], results: Path, public: bool) -> None:
    """robustness.md: one line per seed-0 cell (last 10, its change against the clean run of
    the same method and composition, client spread, s/round, the screen's rates), then the
    targets' cells over seeds."""
    by = {(r["method"], r["robust"], r["attack"]): r for r in rows if r["seed"] == SEED}
    lines = [f"# Robustness (FMNIST-100 #C=2, {ROUNDS} rounds, seed {SEED}, "
             f"{SHARE:.0%} attackers)", "", "Generated by `python -m benchmarks.robustness "
             "--report`; settings in `benchmarks/robustness.py`.", "",
             "| method | attack | last 10 | Δ vs clean | client std | worst-10 % | s/round "
             "| screened: attackers / honest | platform |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for m, rob, a in cells():
        if (r := by.get((m, rob, a))) is None:
            continue
        clean = by.get((m, rob, "none"))
        delta = f"{(last10(r) - last10(clean)) * 100:+.1f}" if clean else "–"
        seen = f"{rates[0]:.0%} / {rates[1]:.0%}" if (rates := detection(r)) else "–"
        lines.append(
            f"| {m}{ROBUST if rob else ''} | {a} | {last10(r) * 100:.1f} | {delta} "
            f"| {r['client_acc_std'] * 100:.1f} | {r['client_acc_worst10'] * 100:.1f} "
            f"| {r['seconds_per_round']:.1f} | {seen} | {platform_kind_of(r)} |"
        )
    (results / "robustness.md").write_text("\n".join(lines + headline(rows)) + "\n")


def headline(rows: list[dict]) -> list[str]:
    """The targets' cells over seeds: last-10 change against the clean run of the same
    seed, per seed and in the mean; the recommended robust composition's verdict."""
    by = {(r["method"], r["robust"], r["attack"], r["seed"]): r for r in rows}
    lines = ["", f"## The targets' cells over seeds {HEADLINE_SEEDS}", "",
             "| method | attack | Δ vs clean per seed | mean Δ | target: loses ≤ 2 points |",
             "|---|---|---|---|---|"]  # fmt: skip
    for m, rob, a in HEADLINE:
        pairs = [(by[m, rob, a, s], by[m, rob, "none", s]) for s in HEADLINE_SEEDS
                 if (m, rob, a, s) in by and (m, rob, "none", s) in by]  # fmt: skip
        if a == "none" or not pairs:
            continue
        d = [(last10(x) - last10(c)) * 100 for x, c in pairs]
        mean = float(np.mean(d))
        verdict = ("met" if mean >= -2 else "missed") if rob else "(stated beside)"
        seeds = " / ".join(f"{v:+.1f}" for v in d) + (f" ({len(d)} seeds)" if len(d) > 1 else "")
        lines.append(f"| {m}{ROBUST if rob else ''} | {a} | {seeds} "
                     f"| {mean:+.2f} | {verdict} |")  # fmt: skip
    return lines


if __name__ == "__main__":
    raise SystemExit(main(cellset(), __doc__ or ""))
