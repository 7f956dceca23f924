"""Run Fed-ZDA and FedAvg on the same federation and print them side by side.

    python -m scripts.compare [configs/compare.toml] [--algorithms fedavg,zda] [key=value ...]

Each algorithm runs through `flwr run .` (the same seed, so the same partitions and the same
clients sampled each round); the table gives the final global accuracy, the spread of
per-client accuracy (std and the mean of the worst 10 %, every client scored in the last
round) and seconds per round; ``compare.png`` plots accuracy per round beside every client's
accuracy in the last round, sorted worst to best (the fairness gap). Everything goes to
one directory (``output.dir``, else ``runs/compare-<time>``), one run directory per
algorithm inside it. Exits non-zero if any run fails.
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
from scripts.simulate import ROOT, simulate

DEFAULT = "configs/compare.toml"


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
        "platform": json.loads((run_dir / "meta.json").read_text()).get("platform"),
    }


def table(results: dict[str, dict]) -> str:
    """The methods side by side, one line each."""
    head = f"{'algorithm':<10} {'final acc':>9} {'client std':>10} {'worst-10%':>9} {'s/round':>8}"
    lines = [head, "-" * len(head)]
    for alg, r in results.items():
        lines.append(
            f"{alg:<10} {r['final_accuracy']:>9.4f} {r['client_acc_std']:>10.4f} "
            f"{r['client_acc_worst10']:>9.4f} {r['seconds_per_round']:>8.1f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run every algorithm, then write the table, the plot and compare.json; the exit code."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--algorithms", default="fedavg,zda")
    ap.add_argument("--supernodes", type=int, default=100, help="simulated clients")
    ap.add_argument(
        "args", nargs="*", help=f"[experiment.toml (default {DEFAULT})] [key=value ...]"
    )
    a = ap.parse_args(argv)
    toml = [x for x in a.args if x.endswith(".toml") and "=" not in x] or [DEFAULT]
    overrides = " ".join(x for x in a.args if x not in toml)
    algorithms = [x for x in a.algorithms.split(",") if x]
    try:  # check the experiment once, for every algorithm, before anything starts
        cfgs = {alg: run_config_file(toml[0], f"{overrides} algorithm={alg}", ROOT)[1]
                for alg in algorithms}  # fmt: skip
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 1
    first = cfgs[algorithms[0]]
    out = Path(
        first.output.dir or ROOT / first.output.root / time.strftime("compare-%Y%m%d-%H%M%S")
    )
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for alg in algorithms:
        run_dir = out / alg
        print(f"compare: {alg} -> {run_dir}", flush=True)
        proc = simulate(f"{overrides} algorithm={alg} output.dir={run_dir}", a.supernodes,
                        out / "flwr-home", experiment=toml[0], capture=False)  # fmt: skip
        if proc.returncode != 0 or not (run_dir / "summary.json").is_file():
            print(f"compare: the {alg} run failed (exit {proc.returncode})", file=sys.stderr)
            return 1
        results[alg] = summarise(run_dir)
    text = table(results)
    title = f"{first.name}: {a.supernodes} clients, {first.rounds} rounds"
    plot_comparison(results, out / "compare.png", title)
    (out / "compare.json").write_text(json.dumps(results, indent=2))
    (out / "compare.txt").write_text(text + "\n")
    print(f"\n{title}\n{text}\n\ncompare: table, plot and runs in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
