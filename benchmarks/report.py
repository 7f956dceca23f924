"""Build fmnist10.json, fmnist10.md and plots from the finished benchmark cells."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from fedtask.plots import plt

ROW_KEYS = (
    "algorithm",
    "partition",
    "seed",
    "rounds",
    "final_accuracy",
    "best_accuracy",
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


def load_rows(cell_dir: Path) -> list[dict]:
    """Cells as result rows with exactly ROW_KEYS, rounds_to_fedavg_final filled in."""
    raw = [json.loads(p.read_text()) for p in sorted(cell_dir.glob("*.json"))]
    fedavg = {(r["partition"], r["seed"]): r for r in raw if r["algorithm"] == "fedavg"}
    rows = []
    for r in raw:
        ref = fedavg.get((r["partition"], r["seed"]))
        if ref is not None:
            r["rounds_to_fedavg_final"] = rounds_to_reach(
                r["accuracy_per_round"], ref["final_accuracy"]
            )
        rows.append({k: r.get(k) for k in ROW_KEYS})
    rows.sort(
        key=lambda r: (PART_ORDER.index(r["partition"]), ORDER.index(r["algorithm"]), r["seed"])
    )
    return rows


def _fmt(values: list, pct: bool = True) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "–"
    scale = 100 if pct else 1
    if len(vals) == 1:
        return f"{vals[0] * scale:.1f}" if pct else f"{vals[0]:.1f}"
    return f"{np.mean(vals) * scale:.1f} ± {np.std(vals) * scale:.1f}"


def markdown(rows: list[dict], yardstick: dict, missing: list[str]) -> str:
    """The results table (accuracies in %, mean ± std over seeds where several)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["partition"], r["algorithm"])].append(r)
    lines = [
        "# FMNIST-10 results",
        "",
        f"Yardstick: {json.dumps(yardstick)}",
        "",
        "Accuracies in %; `±` is the std over seeds where a cell has several seeds. "
        "`client std` and `worst-10%` are over the 10 clients' own test sets (final round).",
        "",
        "| partition | algorithm | seeds | final acc | best acc | client mean | client std "
        "| worst-10% | s/round | inversion s/round | rounds to FedAvg final |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (part, alg), rs in groups.items():
        lines.append(
            f"| {part} | {alg} | {','.join(str(r['seed']) for r in rs)} "
            f"| {_fmt([r['final_accuracy'] for r in rs])} "
            f"| {_fmt([r['best_accuracy'] for r in rs])} "
            f"| {_fmt([r['client_acc_mean'] for r in rs])} "
            f"| {_fmt([r['client_acc_std'] for r in rs])} "
            f"| {_fmt([r['client_acc_worst10'] for r in rs])} "
            f"| {_fmt([r['seconds_per_round'] for r in rs], pct=False)} "
            f"| {_fmt([r['inversion_seconds_per_round'] for r in rs], pct=False)} "
            f"| {', '.join(str(r['rounds_to_fedavg_final']) for r in rs)} |"
        )
    if missing:
        lines += ["", f"Not run yet ({len(missing)} cells): " + ", ".join(missing)]
    return "\n".join(lines) + "\n"


def plots(rows: list[dict], out: Path) -> None:
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
    fig.savefig(out / "fmnist10_accuracy.png", dpi=110)
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
    fig.savefig(out / "fmnist10_client_spread.png", dpi=110)
    plt.close(fig)


README_START, README_END = "<!-- FMNIST10:START -->", "<!-- FMNIST10:END -->"


def update_readme(readme: Path, table_md: str, command: str) -> bool:
    """Replace the README block between the FMNIST10 markers with the generated table."""
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        return False
    body = table_md.split("\n", 2)[2]  # drop the "# FMNIST-10 results" heading
    block = f"{README_START}\nGenerated by `{command}` from `benchmarks/results/`.\n\n{body}"
    head, rest = text.split(README_START, 1)
    readme.write_text(head + block + README_END + rest.split(README_END, 1)[1])
    return True


def write_report(
    cell_dir: Path,
    out: Path,
    yardstick: dict,
    expected: list[str] | None = None,
    readme: Path | None = None,
) -> list[dict]:
    """Write fmnist10.json / fmnist10.md / plots into ``out``; return the rows."""
    rows = load_rows(cell_dir)
    done = {f"{r['algorithm']}-{r['partition']}-s{r['seed']}" for r in rows}
    missing = [c for c in (expected or []) if c not in done]
    (out / "fmnist10.json").write_text(json.dumps({"yardstick": yardstick, "rows": rows}, indent=2))
    table = markdown(rows, yardstick, missing)
    (out / "fmnist10.md").write_text(table)
    plots(rows, out)
    if readme is not None:
        update_readme(readme, table, "python -m benchmarks.fmnist10 --report")
    return rows
