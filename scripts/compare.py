"""Run methods on the same federation and print them side by side (README command 1).

    python -m scripts.compare [configs/compare.toml] [--methods "fedavg; fedlc fedlc.tau=16"]
        [--publish] [key=value ...]
    python -m scripts.compare --readme     # README's table from benchmarks/results/compare.json

By default: the recommended method for few classes per client, zdas+scaffold at its tuned
settings, against the strongest tuned baseline there, FedLC at tau 16, with FedAvg as the
reference. Each method (an algorithm and its own overrides) runs through `flwr run .` (the
same seed, so the same partitions and the same clients sampled each round); the table
gives the final global accuracy, the spread of per-client accuracy (std and the mean of the
worst 10 %, every client scored in the last round) and seconds per round; ``compare.png``
plots accuracy per round beside every client's accuracy in the last round, sorted worst to
best (the fairness gap). Everything goes to one directory (``output.dir``, else
``runs/compare-<time>``), one run directory per method inside it; ``compare.json`` names
the platform each run had. ``--publish`` also copies it to ``benchmarks/results/`` and
rewrites the README's table from it. Exits non-zero if any run fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from fedcore.config import ConfigError
from fedcore.plots import plot_comparison
from fedcore.runconfig import run_config_file
from fedcore.rundir import recorded_platform
from scripts.simulate import ROOT, simulate

DEFAULT = "configs/compare.toml"
# the recommended method and the strongest tuned baseline for #C=2 (README "Which to pick")
METHODS = "fedavg; fedlc fedlc.tau=16; zdas+scaffold train.lr=0.003 zdas.finetune_lr=0.0003"
PUBLISHED = ROOT / "benchmarks" / "results" / "compare.json"
README = ROOT / "README.md"
BEGIN, END = "<!-- compare:begin (scripts/compare.py --readme) -->", "<!-- compare:end -->"


def parse_methods(text: str) -> dict[str, str]:
    """``"fedavg; fedlc fedlc.tau=16"`` -> {"fedavg": "", "fedlc": "fedlc.tau=16"}."""
    out = {}
    for entry in (e.strip() for e in text.split(";")):
        if entry:
            name, _, keys = entry.partition(" ")
            out[name] = keys.strip()
    return out


def summarise(run_dir: Path) -> dict:
    """One run directory's final metrics, per-round accuracy and the last round's accuracy of
    each client (``client_accuracies`` of metrics.jsonl: by partition id, None where a client
    did not report)."""
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    last = rows[-1]
    return {
        "final_accuracy": last["global_accuracy"],
        "client_acc_std": last["client_acc_std"],
        "client_acc_worst10": last["client_acc_worst10"],
        "seconds_per_round": sum(r["round_seconds"] for r in rows) / len(rows),
        "accuracy_per_round": [r["global_accuracy"] for r in rows],
        "client_accuracies": last.get("client_accuracies") or [],
        "platform": recorded_platform(run_dir),
    }


def table(results: dict[str, dict]) -> str:
    """The methods side by side, one line each."""
    w = max(10, *(len(a) for a in results))
    head = f"{'algorithm':<{w}} {'final acc':>9} {'client std':>10} {'worst-10%':>9} {'s/round':>8}"
    lines = [head, "-" * len(head)]
    for alg, r in results.items():
        lines.append(
            f"{alg:<{w}} {r['final_accuracy']:>9.4f} {r['client_acc_std']:>10.4f} "
            f"{r['client_acc_worst10']:>9.4f} {r['seconds_per_round']:>8.1f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run every algorithm, then write the table, the plot and compare.json; the exit code."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", default=METHODS, help="'algorithm [key=value ...]; ...'")
    ap.add_argument("--supernodes", type=int, default=100, help="simulated clients")
    ap.add_argument("--publish", action="store_true", help="results + README table too")
    ap.add_argument("--readme", action="store_true", help="only the README table, from "
                    f"{PUBLISHED.relative_to(ROOT)}")  # fmt: skip
    ap.add_argument(
        "args", nargs="*", help=f"[experiment.toml (default {DEFAULT})] [key=value ...]"
    )
    a = ap.parse_args(argv)
    toml = [x for x in a.args if x.endswith(".toml") and "=" not in x] or [DEFAULT]
    overrides = " ".join(x for x in a.args if x not in toml)
    if a.readme:
        write_readme(json.loads(PUBLISHED.read_text()))
        return 0
    methods = parse_methods(a.methods)
    keys = {m: f"{overrides} algorithm={m} {extra}" for m, extra in methods.items()}
    try:  # check the experiment once, for every method, before anything starts
        cfgs = {m: run_config_file(toml[0], k, ROOT)[1] for m, k in keys.items()}
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 1
    first = cfgs[next(iter(methods))]
    out = Path(
        first.output.dir or ROOT / first.output.root / time.strftime("compare-%Y%m%d-%H%M%S")
    )
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for m in methods:
        run_dir = out / m
        print(f"compare: {m} -> {run_dir}", flush=True)
        proc = simulate(f"{keys[m]} output.dir={run_dir}", a.supernodes, out / "flwr-home",
                        experiment=toml[0], capture=False)  # fmt: skip
        if proc.returncode != 0 or not (run_dir / "summary.json").is_file():
            print(f"compare: the {m} run failed (exit {proc.returncode})", file=sys.stderr)
            return 1
        results[m] = summarise(run_dir) | {"setting": methods[m]}
    text = table(results)
    title = f"{first.name}: {a.supernodes} clients, {first.rounds} rounds"
    plot_comparison(results, out / "compare.png", title)
    doc = {"title": title, "experiment": toml[0], "overrides": overrides,
           "platform": results[next(iter(results))]["platform"], "methods": results}  # fmt: skip
    (out / "compare.json").write_text(json.dumps(doc, indent=2))
    (out / "compare.txt").write_text(text + "\n")
    print(f"\n{title}\n{text}\n\ncompare: table, plot and runs in {out}")
    if a.publish:
        PUBLISHED.write_text(json.dumps(doc, indent=2) + "\n")
        write_readme(doc)
    return 0


def readme_block(doc: dict) -> str:
    """The README's table from a compare.json: the title, the table, the platform."""
    p = doc.get("platform") or {}
    where = (f"{p.get('kind', '?')}: {p.get('cpu', '?')}, torch {p.get('torch', '?')}, "
             f"{p.get('torch_threads', '?')} torch thread(s) in the ServerApp")  # fmt: skip
    settings = "; ".join(f"{m} {r['setting']}".strip() for m, r in doc["methods"].items())
    return "\n".join([BEGIN, "```", doc["title"], table(doc["methods"]), "```", "",
                      f"Settings: {settings}. Made on {where}, from "
                      f"`benchmarks/results/compare.json`.", END])  # fmt: skip


def write_readme(doc: dict) -> None:
    """Replace the README's table between its markers with :func:`readme_block`."""
    text = README.read_text()
    head, rest = text.split(BEGIN, 1)
    README.write_text(head + readme_block(doc) + rest.split(END, 1)[1])


if __name__ == "__main__":
    raise SystemExit(main())
