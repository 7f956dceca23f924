"""The paired comparison: every method at its tuned setting on FMNIST-100, Dirichlet 0.1 and
#C=2, seeds 0, 1, 2, 50 rounds (one seed fixes the partition and the clients sampled each
round for every method, so differences are paired by seed).

Each method runs at its pick from ``benchmarks/results/tuning/`` (the best mean accuracy of
the last 10 rounds; read at run time, recorded in every cell). The federation is the
FMNIST-100 yardstick's. Cells are saved in ``benchmarks/results/paired/``; a cell of an
earlier pick is stale: rerun and left out of the report. (Early FedAvg and ZDA cells were
taken over from the FMNIST-100 yardstick's, the same run config: ``reused_from``.)

    .venv/bin/python -m benchmarks.paired [--cell fedlc-dir0.1-s0] [--list] [--report]

Wall time to accuracy is a cell's rounds to the best baseline's accuracy times the method's
seconds per round from ``benchmarks.studies.paired_timing``: the methods run one after the
other in one invocation (Dirichlet 0.1, seed 0, 10 rounds each, cold rounds included), so
that their times compare.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from benchmarks.fmnist100 import FMNIST100
from benchmarks.harness import RESULTS, Cell, CellSet, flower_cell, main
from benchmarks.report import last10, mean_std, platform_kind_of, rounds_to_reach, signed, verdict
from benchmarks.tuning import setting

ROUNDS, PARTITIONS, SEEDS = 50, ("dir0.1", "c2"), (0, 1, 2)
BASELINES = ("fedavg", "fedprox", "scaffold", "qfedavg", "fedlc")
METHODS = (*BASELINES, "zdas", "zda", "zdas+fedlc", "zdas+scaffold")
# the compositions the targets are read for: zdas+fedlc (level with zda+fedlc in its trial,
# and cheaper) and zdas+scaffold (ahead of it in a #C=2 trial); levers.md
CANDIDATES = ("zdas+fedlc", "zdas+scaffold")
TIMING = RESULTS / "paired_timing.json"


def cell(method: str, partition: str, seed: int) -> Cell:
    """A method at its tuned pick on the yardstick's federation, through `flwr run .`."""
    pick = setting(method)
    keys = f"{FMNIST100.overrides(method, partition, seed, ROUNDS)} {pick}"
    row = {"algorithm": method, "partition": partition, "seed": seed, "setting": pick}
    return Cell(keys, FMNIST100.clients, row, flower_cell)


def cellset() -> CellSet:
    """Every (method, partition, seed), partition-major, then seed, then method."""
    order = [(m, p, s) for p in PARTITIONS for s in SEEDS for m in METHODS]
    return CellSet("paired", {f"{m}-{p}-s{s}": cell(m, p, s) for m, p, s in order}, report)


def per_round(times: dict | None) -> dict[str, float]:
    """Each method's seconds per round in the timing study's file."""
    return {m: t["seconds_per_round"] for m, t in (times or {}).get("methods", {}).items()}


def summary(rows: list[dict], times: dict | None = None) -> dict:
    """Per partition and method: last-10 accuracy, client std, worst-10 % (per seed), the
    paired difference to the best baseline per seed, rounds (and with ``times``, the timing
    pair's seconds) to its accuracy."""
    secs, out = per_round(times), {}
    for part in PARTITIONS:
        by = {(r["algorithm"], r["seed"]): r for r in rows if r["partition"] == part}
        acc = {k: last10(r) for k, r in by.items()}
        means = {m: float(np.mean(v)) for m in METHODS
                 if (v := [acc[(m, s)] for s in SEEDS if (m, s) in acc])}  # fmt: skip
        base = [m for m in BASELINES if m in means]
        best = max(base, key=means.__getitem__) if base else None
        table = {}
        for m in METHODS:
            if not (seeds := [s for s in SEEDS if (m, s) in by]):
                continue
            mine = [by[(m, s)] for s in seeds]
            paired = [s for s in seeds if (best, s) in by]
            reach = {s: rounds_to_reach(by[(m, s)]["accuracy_per_round"], acc[(best, s)])
                     for s in paired}  # fmt: skip
            table[m] = {
                "seeds": seeds,
                "setting": by[(m, seeds[0])].get("setting", ""),
                "last10": [acc[(m, s)] for s in seeds],
                "client_std": [float(r["client_acc_std"]) for r in mine],
                "worst10": [float(r["client_acc_worst10"]) for r in mine],
                "seconds_per_round": [float(r["seconds_per_round"]) for r in mine],
                "diff_to_best": {s: acc[(m, s)] - acc[(best, s)] for s in paired},
                "rounds_to_best": reach,
                "seconds_to_best": {
                    s: r * secs[m] if r and m in secs else None for s, r in reach.items()
                },
                "reused": [r["seed"] for r in mine if r.get("reused_from")],
                "core_loop": [r["seed"] for r in mine if r.get("path", "").startswith("core")],
                "platforms": sorted({platform_kind_of(r) for r in mine}),
            }
        out[part] = {"best_baseline": best, "methods": table}
    return out


def targets(summ: dict, times: dict | None, method: str) -> list[str]:
    """The comparison issue's targets for ``method`` against the best baseline, per
    partition, each met or missed (and by how much) on the cells run so far."""
    lines = ["| partition | target | measured | verdict |", "|---|---|---|---|"]
    secs = per_round(times)
    for part, s in summ.items():
        rec, best = s["methods"].get(method), s["best_baseline"]
        if not rec or not best:
            continue
        b = s["methods"][best]
        diffs = list(rec["diff_to_best"].values())
        d, worst = float(np.mean(rec["last10"]) - np.mean(b["last10"])), min(diffs, default=0)
        w = float(np.mean(rec["worst10"]) - np.mean(b["worst10"]))
        sd = float(np.mean(rec["client_std"]) / np.mean(b["client_std"]))
        n = f"{len(rec['seeds'])} vs {len(b['seeds'])} seeds"
        lines += [
            f"| {part} | last 10 ≥ {best} + 0.03, every seed's Δ > 0 | {d:+.3f} ({n}); "
            f"smallest Δ {worst:+.3f} | {verdict(min(d - 0.03, worst))} |",
            f"| {part} | worst-10 % ≥ {best} + 0.10 | {w:+.3f} | {verdict(w - 0.10)} |",
            f"| {part} | client std ≤ 0.7 × {best} | {sd:.2f}× | {verdict(0.7 - sd)} |",
        ]
        own = [r for r in b["rounds_to_best"].values() if r]
        mine = [r for r in rec["rounds_to_best"].values() if r]
        if own and mine and method in secs and best in secs:
            ratio = (np.mean(mine) * secs[method]) / (np.mean(own) * secs[best])
            lines.append(f"| {part} | wall time to {best}'s last 10 ≤ 0.5 × its own | "
                         f"{ratio:.2f}× | {verdict(0.5 - ratio)} |")  # fmt: skip
    if method in secs and "fedavg" in secs:
        r = secs[method] / secs["fedavg"]
        lines.append(f"| dir0.1 | round time ≤ 1.3 × FedAvg's | {r:.2f}× | {verdict(1.3 - r)} |")
    return lines


def markdown(summ: dict, times: dict | None = None) -> str:
    """The comparison as tables, one per partition (accuracies in %), and the timing pair."""
    lines = [
        f"# Paired comparison (FMNIST-100, {ROUNDS} rounds, seeds {', '.join(map(str, SEEDS))})",
        "",
        "Each method at its tuned pick (`tuning.md`). Last 10: mean global accuracy of the",
        "last 10 rounds; client std and worst-10 %: per-client accuracy in the last round;",
        "mean ± std over the seeds run. Δ: the paired difference in last-10 accuracy to the",
        "best baseline (the baseline with the highest mean last 10), per seed. Rounds: the",
        "first round reaching the best baseline's last-10 accuracy of that seed (– never).",
        "Seconds: rounds × the method's s/round from the back-to-back timing run (below);",
        "s/round: the cells' own (other work may have overlapped some cells). Core loop: a",
        "cell run by `benchmarks.pool` (no Flower; its device in the cell's JSON).",
        "Platform: the kind of machine each cell ran on (fedcore.provenance); `unrecorded`:",
        "a cell from before results recorded it, on one of several CPU types whose float",
        "results differ, so digits compare only within one platform kind.",
        "Generated by `python -m benchmarks.paired --report`.",
    ]
    for part, s in summ.items():
        lines += ["", f"## {part} (best baseline: {s['best_baseline'] or '–'})", "",
                  "| method | setting | seeds | last 10 | Δ per seed | client std | worst-10 % "
                  "| rounds | seconds | s/round | platform |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for m, t in s["methods"].items():
            rr = " / ".join(str(v) if v else "–" for v in t["rounds_to_best"].values()) or "–"
            ws = " / ".join(f"{v:.0f}" if v else "–" for v in t["seconds_to_best"].values())
            notes = [(len(t["reused"]), "reused"), (len(t["core_loop"]), "core loop")]
            seeds = f"{len(t['seeds'])}" + "".join(f" ({n} {what})" for n, what in notes if n)
            lines.append(
                f"| {m} | {t['setting'] or 'default'} | {seeds} | {mean_std(t['last10'])} "
                f"| {signed(t['diff_to_best'].values()) or '–'} | {mean_std(t['client_std'])} "
                f"| {mean_std(t['worst10'])} | {rr} | {ws or '–'} "
                f"| {mean_std(t['seconds_per_round'], False)} | {', '.join(t['platforms'])} |"
            )
    for method in CANDIDATES:
        lines += ["", f"## Targets ({method} against the best baseline)", ""]
        lines += targets(summ, times, method)
    if times:
        ref = per_round(times).get("fedavg")
        lines += ["", f"## Timing ({times['partition']}, seed {times['seed']}, "
                  f"{times['rounds']} rounds each, back to back, cold rounds included)", "",
                  "| method | setting | s/round | × FedAvg |", "|---|---|---|---|"]  # fmt: skip
        for name, t in times["methods"].items():
            ratio = f"{t['seconds_per_round'] / ref:.2f}" if ref else "–"
            lines.append(f"| {name} | {t['setting'] or 'default'} "
                         f"| {t['seconds_per_round']:.2f} | {ratio} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def report(rows: list[dict], results: Path, public: bool) -> None:
    """paired.json and paired.md from the current cells and the timing study's file."""
    times = json.loads(TIMING.read_text()) if TIMING.is_file() else None
    summ = summary(rows, times)
    (results / "paired.json").write_text(json.dumps(summ | {"timing": times}, indent=2))
    (results / "paired.md").write_text(markdown(summ, times))


if __name__ == "__main__":
    raise SystemExit(main(cellset(), __doc__ or ""))
