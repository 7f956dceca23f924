"""Seconds per round of the paired comparison's methods run back to back in one invocation
(Dirichlet 0.1, seed 0, 10 rounds each, cold rounds included), so that their times compare;
``benchmarks.paired``'s report reads them for wall time to accuracy.

    .venv/bin/python -m benchmarks.studies.paired_timing fedavg,fedlc,zda+fedlc [--rounds 10]
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from benchmarks.harness import RESULTS, code_version, flower_cell
from benchmarks.paired import TIMING, cell
from benchmarks.tuning import setting


def timing(methods: list[str], rounds: int) -> dict:
    """Seconds per round of ``methods`` run back to back on Dirichlet 0.1, seed 0."""
    out: dict = {"partition": "dir0.1", "seed": 0, "rounds": rounds, "methods": {}}
    for m in methods:
        work = RESULTS / "work" / "paired" / f"timing-{m}"
        work.mkdir(parents=True, exist_ok=True)
        full = cell(m, "dir0.1", 0)
        row = flower_cell(dataclasses.replace(full, keys=f"{full.keys} rounds={rounds}"), work)
        out["methods"][m] = {
            "setting": setting(m),
            "seconds_per_round": row["seconds_per_round"],
            "round_seconds": row["round_seconds"],
        }
        print(f"timing {m}: {row['seconds_per_round']:.2f} s/round", flush=True)
    return out | {"code": code_version()}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("methods", help="comma-separated, e.g. fedavg,fedlc,zda+fedlc")
    ap.add_argument("--rounds", type=int, default=10)
    a = ap.parse_args()
    TIMING.write_text(json.dumps(timing(a.methods.split(","), a.rounds), indent=2))
