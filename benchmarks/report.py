"""The tables every cell set's report shares, and a yardstick's report: NAME.json, NAME.md,
plots and its generated block in docs/results.md."""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from benchmarks.harness import ROOT, CellSet
from benchmarks.yardstick import Target, Yardstick
from fedcore.plots import plt

ROW_KEYS = (
    "algorithm", "partition", "seed", "rounds", "final_accuracy", "best_accuracy",
    "last10_accuracy", "client_acc_mean", "client_acc_std", "client_acc_worst10",
    "seconds_per_round", "inversion_seconds_per_round", "rounds_to_fedavg_final",
    "accuracy_per_round",
)  # fmt: skip
COLUMNS = ROW_KEYS[4:12]  # the yardstick table's mean ± std columns, in order
ORDER = ("fedavg", "fedprox", "scaffold", "zdac", "zdas", "zda", "centralized")
PART_ORDER = ("dir0.5", "dir0.1", "c2", "c1", "all")
SPEED_KEYS = (
    "train_sample_steps_per_s", "inversion_sample_steps_per_s", "inversion_to_train_ratio",
    "fedavg_seconds_per_round", "zda_seconds_per_round", "zda_to_fedavg_round_ratio",
    "fedavg_warm_seconds_per_round", "zda_warm_seconds_per_round",
    "zda_to_fedavg_warm_round_ratio", "teacher_accuracy",
)  # fmt: skip


def last10(row: dict) -> float:
    """Mean global accuracy of the last 10 rounds (steadier than one round's under sampling)."""
    return float(np.mean(row["accuracy_per_round"][-10:]))


def rounds_to_reach(curve: list[float], target: float) -> int | None:
    """First round (1-based) whose accuracy reaches ``target``; None if never."""
    return next((i + 1 for i, a in enumerate(curve) if a >= target), None)


def mean_std(values: list, pct: bool = True) -> str:
    """Mean ± population std of the values that are not None (in % where ``pct``)."""
    vals, scale = [v for v in values if v is not None], 100 if pct else 1
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{vals[0] * scale:.1f}"
    return f"{np.mean(vals) * scale:.1f} ± {np.std(vals) * scale:.1f}"


def signed(values: Iterable[float]) -> str:
    """Differences in points, one per seed: ``+1.2 / -0.3``."""
    return " / ".join(f"{v * 100:+.1f}" for v in values)


def verdict(gap: float) -> str:
    """A target met (``gap`` ≥ 0: the measured value's margin) or missed by how much."""
    return "met" if gap >= 0 else f"missed by {abs(gap):.3f}"


def targets(found: list[Target]) -> list[str]:
    """The issue's targets as a table, each met or missed by how much."""
    lines = ["| target | measured | verdict |", "|---|---|---|"]
    for label, value, threshold, higher in found:
        if value is None or threshold is None:
            lines.append(f"| {label} | – | not run yet |")
            continue
        gap = value - threshold if higher else threshold - value
        lines.append(f"| {label} | {value:.3f} (needs {'≥' if higher else '≤'} "
                     f"{threshold:.3f}) | {verdict(gap)} |")  # fmt: skip
    return lines


def platform_kind_of(row: dict) -> str:
    """The kind of machine a cell ran on: its recorded platform, else its device, else
    ``unrecorded`` (cells from before results recorded their platform: CPU types differ)."""
    if row.get("platform"):
        return row["platform"]["kind"]
    device = row.get("device", "cpu")
    return f"cuda-{device.replace(' ', '_')}" if device != "cpu" else "unrecorded"


def cell_id(r: dict) -> str:
    return f"{r['algorithm']}-{r['partition']}-s{r['seed']}"


def code_of(r: dict) -> str:
    """Short commit a cell ran from ("+": uncommitted changes then; "?": not recorded)."""
    code = r.get("code") or {}
    return ((code.get("commit") or "")[:7] + ("+" if code.get("modified") else "")) or "?"


def load_rows(raw: list[dict]) -> list[dict]:
    """Cells as result rows with exactly ROW_KEYS, rounds_to_fedavg_final filled in."""
    fedavg = {(r["partition"], r["seed"]): r for r in raw if r["algorithm"] == "fedavg"}
    rows = []
    for r in map(dict, raw):
        if (ref := fedavg.get((r["partition"], r["seed"]))) is not None:
            r["rounds_to_fedavg_final"] = rounds_to_reach(
                r["accuracy_per_round"], ref["final_accuracy"]
            )
        r["last10_accuracy"] = last10(r)
        rows.append({k: r.get(k) for k in ROW_KEYS})
    return sorted(rows, key=lambda r: (
        PART_ORDER.index(r["partition"]), ORDER.index(r["algorithm"]), r["seed"]))  # fmt: skip


def speed_lines(speed: dict) -> list[str]:
    """speed.json as a short table."""
    lines = ["| quantity | value |", "|---|---|"]
    lines += [f"| `{k}` | {speed[k]:.3f} |" for k in SPEED_KEYS if isinstance(speed.get(k), float)]
    st = speed.get("student_from_synthetic_accuracy") or {}
    lines += [f"| `student_from_synthetic_accuracy.{k}` | {st[k]:.3f} |"
              for k in ("cold", "amortised") if k in st]  # fmt: skip
    if st:
        lines.append(
            f"| distillation set-up | cold: {st['cold_samples']} samples × {st['cold_steps']} "
            f"steps; amortised: {st['amortised_samples']} samples in batches of "
            f"{st['amortised_batch']}, first {st['amortised_first_batch_steps']} steps, then "
            f"{st['amortised_warm_steps']} warm; student {st['student_sample_steps']} "
            "sample-steps |"
        )
    return lines


def markdown(
    yard: Yardstick, rows: list[dict], raw: list[dict], missing: list[str],
    speed: dict | None, public: bool,
) -> str:  # fmt: skip
    """The results table (accuracies in %, mean ± std over seeds where several), the speed
    file and the targets. ``public`` (docs/results.md) leaves out the commit of each cell."""
    codes = {cell_id(r): code_of(r) for r in raw}
    code_note = "" if public else (
        " `code` is the commit each cell ran from, one per seed in the `seeds` order where they "
        "differ (`+`: with uncommitted changes, listed in the cell's file; `?`: not recorded, "
        "the cell predates that record).")  # fmt: skip
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["partition"], r["algorithm"])].append(r)
    lines = [f"# {yard.title} results", "", "Yardstick:", ""]
    lines += [f"- {k}: {json.dumps(v) if isinstance(v, dict) else v}"
              for k, v in yard.meta().items()]  # fmt: skip
    lines += [
        "",
        "Accuracies in %; `±` is the population standard deviation (ddof 0) over seeds where a "
        f"cell has several seeds. `client std` and `worst-10%` are over the {yard.clients} "
        "clients' own test sets (final round). `last 10` is the mean global accuracy over the "
        "last ten rounds." + code_note,
        "",
        "| partition | algorithm | seeds | final acc | best acc | last 10 | client mean "
        "| client std | worst-10% | s/round | inversion s/round | rounds to FedAvg final |"
        + ("" if public else " code |"),
        "|---|---|---|---|---|---|---|---|---|---|---|---|" + ("" if public else "---|"),
    ]
    for (part, alg), rs in groups.items():
        reach = ", ".join("never" if r["rounds_to_fedavg_final"] is None and alg != "centralized"
                          else str(r["rounds_to_fedavg_final"] or "–") for r in rs)  # fmt: skip
        cols = [mean_std([r[k] for r in rs], "seconds" not in k) for k in COLUMNS]
        per_seed = [codes.get(cell_id(r), "?") for r in rs]  # one commit when all ran from it
        code = per_seed[0] if len(set(per_seed)) == 1 else ", ".join(per_seed)
        seeds = ",".join(str(r["seed"]) for r in rs)
        cells = [part, alg, seeds, *cols, reach] + ([] if public else [code])
        lines.append("| " + " | ".join(cells) + " |")
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
        lines += speed_lines(speed)
        lines += ["", "Reproduce: `.venv/bin/python -m benchmarks.studies.speed`."]
    lines += ["", "## Targets", "", *targets(yard.targets(rows, speed))]
    return "\n".join(lines) + "\n"


def _curve(ax: plt.Axes, row: dict, *fmt: str) -> None:
    acc = row["accuracy_per_round"]
    ax.plot(range(1, len(acc) + 1), acc, *fmt, label=row["algorithm"])


def plots(yard: Yardstick, rows: list[dict], out: Path) -> None:
    """Accuracy vs round per partition, and per-client spread (std) per method (seed 0)."""
    parts = [p for p in PART_ORDER[:-1] if any(r["partition"] == p for r in rows)]
    if not parts:
        return
    fig, axes = plt.subplots(1, len(parts), figsize=(4.2 * len(parts), 3.6), squeeze=False)
    central = next((r for r in rows if r["algorithm"] == "centralized"), None)
    for ax, part in zip(axes[0], parts, strict=True):
        for r in rows:
            if r["partition"] == part and r["seed"] == 0:
                _curve(ax, r)
        if central:
            _curve(ax, central, "k:")
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
    std = {(r["algorithm"], r["partition"]): r["client_acc_std"] for r in rows if r["seed"] == 0}
    width = 0.8 / max(len(algs), 1)
    for j, alg in enumerate(algs):
        stds = [std.get((alg, part), np.nan) for part in parts]
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
        "# Results\n\nThe yardsticks' results: every method on the same federation and "
        "partitions, through `flwr run .`, one table per yardstick with the targets it is held "
        f"to. Generated from the finished cells in `benchmarks/results/` by {commands}; do not "
        "edit by hand. Per cell: `benchmarks/results/NAME.md` (with the commit each cell ran "
        "from), `NAME.json` (accuracy per round) and the plots beside them.\n"
    )
    docs.parent.mkdir(parents=True, exist_ok=True)
    docs.write_text("\n".join([head, *blocks.values()]))


def write_report(yard: Yardstick, raw: list[dict], out: Path, public: bool) -> None:
    """Write NAME.json / NAME.md / plots into ``out`` and, when ``public``, the yardstick's
    block in docs/results.md."""
    rows = load_rows(raw)
    done = {cell_id(r) for r in rows}
    missing = [n for a, p, s in yard.cells() if (n := f"{a}-{p}-s{s}") not in done]
    (out / f"{yard.name}.json").write_text(
        json.dumps({"yardstick": yard.meta(), "rows": rows}, indent=2)
    )
    speed_file = out / yard.speed_file
    speed = json.loads(speed_file.read_text()) if yard.speed_file and speed_file.is_file() else None
    (out / f"{yard.name}.md").write_text(markdown(yard, rows, raw, missing, speed, False))
    plots(yard, rows, out)
    if public:
        docs = markdown(yard, rows, raw, missing, speed, True)
        update_docs(ROOT / "docs" / "results.md", yard, docs)


def as_cellset(yard: Yardstick) -> CellSet:
    """The yardstick as a cell set: its cells, its report, and its --quick variant."""
    cells = {f"{a}-{p}-s{s}": yard.cell(a, p, s) for a, p, s in yard.cells()}
    small = dataclasses.replace(yard, rounds=2, quick=True)
    quick = None if yard.quick else (lambda: as_cellset(small))
    report = functools.partial(write_report, yard)
    return CellSet(yard.name, cells, report, yard.cell_dir, quick=quick)
