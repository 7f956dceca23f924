"""Build a yardstick's NAME.json, NAME.md and plots from its finished benchmark cells, and
its generated block in docs/results.md."""

from __future__ import annotations

import dataclasses
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from benchmarks.harness import ROOT, CellSet
from benchmarks.yardstick import Target, Yardstick
from fedcore.plots import plt

ROW_KEYS = (
    "algorithm",
    "partition",
    "seed",
    "rounds",
    "final_accuracy",
    "best_accuracy",
    "last10_accuracy",
    "client_acc_mean",
    "client_acc_std",
    "client_acc_worst10",
    "seconds_per_round",
    "inversion_seconds_per_round",
    "rounds_to_fedavg_final",
    "accuracy_per_round",
)
ORDER = ("fedavg", "fedprox", "scaffold", "zdac", "zdas", "zda", "centralized")
PART_ORDER = ("dir0.5", "dir0.1", "c2", "c1", "all")


def rounds_to_reach(curve: list[float], target: float) -> int | None:
    """First round (1-based) whose accuracy reaches ``target``; None if never."""
    return next((i + 1 for i, a in enumerate(curve) if a >= target), None)


def cell_id(r: dict) -> str:
    return f"{r['algorithm']}-{r['partition']}-s{r['seed']}"


def code_versions(rows: list[dict]) -> dict[str, str]:
    """Short commit each cell ran from ("+" marks uncommitted changes then), by cell id."""
    out = {}
    for r in rows:
        code = r.get("code") or {}
        commit = (code.get("commit") or "")[:7]
        out[cell_id(r)] = (commit + ("+" if code.get("modified") else "")) or "?"
    return out


def load_rows(raw: list[dict]) -> list[dict]:
    """Cells as result rows with exactly ROW_KEYS, rounds_to_fedavg_final filled in."""
    raw = [dict(r) for r in raw]
    fedavg = {(r["partition"], r["seed"]): r for r in raw if r["algorithm"] == "fedavg"}
    rows = []
    for r in raw:
        ref = fedavg.get((r["partition"], r["seed"]))
        if ref is not None:
            r["rounds_to_fedavg_final"] = rounds_to_reach(
                r["accuracy_per_round"], ref["final_accuracy"]
            )
        # under client sampling one round's accuracy swings: the mean of the last ten is steadier
        r["last10_accuracy"] = float(np.mean(r["accuracy_per_round"][-10:]))
        rows.append({k: r.get(k) for k in ROW_KEYS})
    rows.sort(
        key=lambda r: (PART_ORDER.index(r["partition"]), ORDER.index(r["algorithm"]), r["seed"])
    )
    return rows


def mean_std(values: list, pct: bool = True) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "–"
    scale = 100 if pct else 1
    if len(vals) == 1:
        return f"{vals[0] * scale:.1f}" if pct else f"{vals[0]:.1f}"
    return f"{np.mean(vals) * scale:.1f} ± {np.std(vals) * scale:.1f}"


def targets(found: list[Target]) -> list[str]:
    """The issue's targets as a table, each met or missed by how much."""
    lines = ["| target | measured | verdict |", "|---|---|---|"]
    for label, value, threshold, higher in found:
        if value is None or threshold is None:
            lines.append(f"| {label} | – | not run yet |")
            continue
        gap = value - threshold if higher else threshold - value
        verdict = "met" if gap >= 0 else f"missed by {abs(gap):.3f}"
        lines.append(f"| {label} | {value:.3f} (needs {'≥' if higher else '≤'} "
                     f"{threshold:.3f}) | {verdict} |")  # fmt: skip
    return lines


def speed_lines(speed: dict) -> list[str]:
    """speed.json as a short table."""
    keys = (
        "train_sample_steps_per_s",
        "inversion_sample_steps_per_s",
        "inversion_to_train_ratio",
        "fedavg_seconds_per_round",
        "zda_seconds_per_round",
        "zda_to_fedavg_round_ratio",
        "fedavg_warm_seconds_per_round",
        "zda_warm_seconds_per_round",
        "zda_to_fedavg_warm_round_ratio",
        "teacher_accuracy",
    )
    lines = ["| quantity | value |", "|---|---|"]
    lines += [f"| `{k}` | {speed[k]:.3f} |" for k in keys if isinstance(speed.get(k), float)]
    st = speed.get("student_from_synthetic_accuracy") or {}
    for k in ("cold", "amortised"):
        if k in st:
            lines.append(f"| `student_from_synthetic_accuracy.{k}` | {st[k]:.3f} |")
    if st:
        lines.append(
            f"| distillation set-up | cold: {st['cold_samples']} samples × {st['cold_steps']} "
            f"steps; amortised: {st['amortised_samples']} samples in batches of "
            f"{st['amortised_batch']}, first {st['amortised_first_batch_steps']} steps, then "
            f"{st['amortised_warm_steps']} warm; student {st['student_sample_steps']} "
            "sample-steps |"
        )
    return lines


def _codes(per_seed: list[str]) -> str:
    """One commit when every seed ran from it, else one per seed in the seeds' order."""
    return per_seed[0] if len(set(per_seed)) == 1 else ", ".join(per_seed)


def markdown(
    yard: Yardstick,
    rows: list[dict],
    yardstick: dict,
    missing: list[str],
    codes: dict[str, str] | None = None,
    speed: dict | None = None,
    public: bool = False,
) -> str:
    """The results table (accuracies in %, mean ± std over seeds where several), the speed
    file and the targets. ``public`` (docs/results.md) leaves out the commit of each cell."""
    codes = codes or {}
    code_note = (
        ""
        if public
        else " `code` is the commit each cell ran from, one per seed in the `seeds` order where "
        "they differ (`+`: with uncommitted changes, listed in the "
        "cell's file; `?`: not recorded, the cell predates that record)."
    )
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["partition"], r["algorithm"])].append(r)
    lines = [f"# {yard.title} results", "", "Yardstick:", ""]
    lines += [f"- {k}: {json.dumps(v) if isinstance(v, dict) else v}" for k, v in yardstick.items()]
    lines += [
        "",
        "Accuracies in %; `±` is the population standard deviation (ddof 0) over seeds where "
        "a cell has several seeds. "
        f"`client std` and `worst-10%` are over the {yard.clients} clients' own test sets "
        "(final round). `last 10` is the mean global accuracy over the last ten rounds."
        + code_note,
        "",
        "| partition | algorithm | seeds | final acc | best acc | last 10 | client mean "
        "| client std | worst-10% | s/round | inversion s/round | rounds to FedAvg final |"
        + ("" if public else " code |"),
        "|---|---|---|---|---|---|---|---|---|---|---|---|" + ("" if public else "---|"),
    ]
    for (part, alg), rs in groups.items():
        reach = ", ".join("never" if r["rounds_to_fedavg_final"] is None and alg != "centralized"
                          else str(r["rounds_to_fedavg_final"] or "–") for r in rs)  # fmt: skip
        lines.append(
            f"| {part} | {alg} | {','.join(str(r['seed']) for r in rs)} "
            f"| {mean_std([r['final_accuracy'] for r in rs])} "
            f"| {mean_std([r['best_accuracy'] for r in rs])} "
            f"| {mean_std([r['last10_accuracy'] for r in rs])} "
            f"| {mean_std([r['client_acc_mean'] for r in rs])} "
            f"| {mean_std([r['client_acc_std'] for r in rs])} "
            f"| {mean_std([r['client_acc_worst10'] for r in rs])} "
            f"| {mean_std([r['seconds_per_round'] for r in rs], pct=False)} "
            f"| {mean_std([r['inversion_seconds_per_round'] for r in rs], pct=False)} "
            f"| {reach} |"
            + ("" if public else f" {_codes([codes.get(cell_id(r), '?') for r in rs])} |")
        )
    if missing:
        lines += ["", f"Not run yet ({len(missing)} cells): " + ", ".join(missing)]
    cmd = f".venv/bin/python -m benchmarks.{yard.name}"
    lines += [
        "",
        f"Reproduce one cell (delete its `benchmarks/results/{yard.cell_dir}/ALG-PART-sSEED.json` "
        f"first): `{cmd} --cell ALG-PART-sSEED`; centralized: `--cell centralized-all-s0`. "
        f"Every missing or stale cell: `{cmd}` (current cells are skipped).",
    ]
    if speed is not None:
        lines += ["", "## Speed and distillation quality (`benchmarks/results/speed.json`)", ""]
        lines += [
            *speed_lines(speed),
            "",
            "Reproduce: `.venv/bin/python -m benchmarks.studies.speed`.",
        ]
    lines += ["", "## Targets", "", *targets(yard.targets(rows, speed))]
    return "\n".join(lines) + "\n"


def plots(yard: Yardstick, rows: list[dict], out: Path) -> None:
    """Accuracy vs round per partition, and per-client spread (std) per method."""
    parts = [p for p in PART_ORDER[:-1] if any(r["partition"] == p for r in rows)]
    if not parts:
        return
    fig, axes = plt.subplots(1, len(parts), figsize=(4.2 * len(parts), 3.6), squeeze=False)
    central = next((r for r in rows if r["algorithm"] == "centralized"), None)
    for ax, part in zip(axes[0], parts, strict=True):
        for r in rows:
            if r["partition"] == part and r["seed"] == 0:
                ax.plot(
                    range(1, len(r["accuracy_per_round"]) + 1),
                    r["accuracy_per_round"],
                    label=r["algorithm"],
                )
        if central:
            ax.plot(
                range(1, len(central["accuracy_per_round"]) + 1),
                central["accuracy_per_round"],
                "k:",
                label="centralized",
            )
        ax.set_title(part)
        ax.set_xlabel("round")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("global test accuracy")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / f"{yard.name}_accuracy.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 3.6))
    algs = [a for a in ORDER[:-1] if any(r["algorithm"] == a for r in rows)]
    width = 0.8 / max(len(algs), 1)
    for j, alg in enumerate(algs):
        stds = []
        for part in parts:
            v = [
                r["client_acc_std"]
                for r in rows
                if r["algorithm"] == alg and r["partition"] == part and r["seed"] == 0
            ]
            stds.append(v[0] if v else np.nan)
        ax.bar(np.arange(len(parts)) + j * width, stds, width, label=alg)
    ax.set_xticks(np.arange(len(parts)) + 0.4 - width / 2, parts)
    ax.set_ylabel("per-client accuracy std (final)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / f"{yard.name}_client_spread.png", dpi=110)
    plt.close(fig)


DOCS_BLOCK = re.compile(r"<!-- (\S+):START -->\n.*?<!-- \1:END -->\n", re.DOTALL)


def update_docs(docs: Path, yard: Yardstick, table_md: str) -> None:
    """Write the yardstick's section of ``docs`` (docs/results.md): a generated preamble, then
    one block per yardstick; this one's is replaced (or appended), the others are kept."""
    blocks = {m[1]: m[0] for m in DOCS_BLOCK.finditer(docs.read_text())} if docs.is_file() else {}
    title, body = table_md.split("\n", 2)[0::2]  # "# TITLE results", the rest
    body = body.lstrip("\n").replace("\n## ", "\n### ")  # its sections nest under its ##
    blocks[yard.name] = (
        f"<!-- {yard.name}:START -->\n## {title.removeprefix('# ').removesuffix(' results')}\n\n"
        f"{body}<!-- {yard.name}:END -->\n"
    )
    blocks = dict(sorted(blocks.items()))  # the same order whichever yardstick ran last
    commands = ", ".join(f"`python -m benchmarks.{name} --report`" for name in blocks)
    head = (
        "# Results\n\n"
        "The yardsticks' results: every method on the same federation and partitions, through "
        "`flwr run .`, one table per yardstick with the targets it is held to. Generated from "
        f"the finished cells in `benchmarks/results/` by {commands}; do not edit by hand. "
        "Per cell: `benchmarks/results/NAME.md` (with the commit each cell ran from), "
        "`NAME.json` (accuracy per round) and the plots beside them.\n"
    )
    docs.parent.mkdir(parents=True, exist_ok=True)
    docs.write_text("\n".join([head, *blocks.values()]))


def write_report(
    yard: Yardstick, raw: list[dict], out: Path, yardstick: dict, expected: list[str],
    public: bool,
) -> list[dict]:  # fmt: skip
    """Write NAME.json / NAME.md / plots into ``out`` and, when ``public``, the yardstick's
    block in docs/results.md; return the rows."""
    rows = load_rows(raw)
    done = {cell_id(r) for r in rows}
    missing = [c for c in expected if c not in done]
    doc = {"yardstick": yardstick, "rows": rows}
    (out / f"{yard.name}.json").write_text(json.dumps(doc, indent=2))
    speed_file = out / yard.speed_file if yard.speed_file else None
    speed = json.loads(speed_file.read_text()) if speed_file and speed_file.is_file() else None
    table = markdown(yard, rows, yardstick, missing, code_versions(raw), speed)
    (out / f"{yard.name}.md").write_text(table)
    plots(yard, rows, out)
    if public:
        docs = markdown(yard, rows, yardstick, missing, speed=speed, public=True)
        update_docs(ROOT / "docs" / "results.md", yard, docs)
    return rows


def as_cellset(yard: Yardstick) -> CellSet:
    """The yardstick as a cell set: its cells, its report, and its --quick variant."""

    def report(rows: list[dict], results: Path, public: bool) -> None:
        names = [f"{a}-{p}-s{s}" for a, p, s in yard.cells()]
        write_report(yard, rows, results, yard.meta(), names, public)

    cells = {f"{a}-{p}-s{s}": yard.cell(a, p, s) for a, p, s in yard.cells()}
    small = dataclasses.replace(yard, rounds=2, quick=True)
    quick = None if yard.quick else (lambda: as_cellset(small))
    return CellSet(yard.name, cells, report, yard.cell_dir, quick=quick)
