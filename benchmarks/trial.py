"""A short lever trial through the user path (`flwr run .`), outside the benchmark matrix.

Runs one configuration (run-config overrides, as for `scripts/run.sh`) on 10 simulated
SuperNodes and prints accuracy per round, the final per-client spread and round times.
Trials are for choosing method defaults; they never become matrix cells.

    .venv/bin/python -m benchmarks.trial zdas-kd-c1 "algorithm=zdas rounds=5 \\
        partition.name=pathological partition.num_classes_per_partition=1 zdas.kd_weight=1"
"""

from __future__ import annotations

import argparse
import json
import time

from benchmarks.fmnist10 import RESULTS
from scripts.simulate import simulate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("name", help="a label for the trial (its work directory)")
    ap.add_argument("overrides", help='run-config overrides, e.g. "algorithm=zdas rounds=5"')
    ap.add_argument("--supernodes", type=int, default=10)
    a = ap.parse_args()
    work = RESULTS / "work" / "trials" / a.name
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    run_dir = work / time.strftime("run-%Y%m%d-%H%M%S")
    overrides = f"{a.overrides} output.dir={run_dir} name={a.name}"
    proc = simulate(overrides, a.supernodes, work / "home")
    (work / "flwr.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0 or not (run_dir / "summary.json").is_file():
        raise SystemExit(f"trial {a.name} failed; see {work / 'flwr.log'}")
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    summary = {
        "trial": a.name,
        "overrides": a.overrides,
        "accuracy_per_round": [round(r["global_accuracy"], 4) for r in rows],
        "client_acc_std": round(rows[-1]["client_acc_std"], 4),
        "client_acc_worst10": round(rows[-1]["client_acc_worst10"], 4),
        "round_seconds": [round(r["round_seconds"], 1) for r in rows],
        "wall_seconds": round(time.perf_counter() - t0, 1),
    }
    (work / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
