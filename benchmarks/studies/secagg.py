"""What secure aggregation (SecAgg+) costs ZDAC: seconds per round with and without it.

    .venv/bin/python -m benchmarks.studies.secagg  # writes benchmarks/results/secagg.json

ZDAC on 10 clients (12 000 Fashion-MNIST training images, Dirichlet 0.1, every client every
round, 5 rounds, seed 0), once plainly and once with ``server.secure_aggregation=true``,
one after the other through `flwr run .`. Reports the mean seconds per round (all rounds,
and from round 2 on), the final accuracy of both, and the largest difference between the
two final models.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

from benchmarks.yardstick import RESULTS
from scripts.simulate import simulate

BASE = "algorithm=zdac partition.name=dirichlet partition.alpha=0.1 seed=0 data.train_subset=12000"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=RESULTS / "secagg.json")
    a = ap.parse_args()
    out: dict = {"clients": 10, "rounds": a.rounds, "settings": BASE}
    models = {}
    for name, extra in (("plain", ""), ("secure", "server.secure_aggregation=true")):
        work = RESULTS / "work" / "secagg" / name
        run_dir = work / "run"
        shutil.rmtree(run_dir, ignore_errors=True)
        proc = simulate(f"{BASE} {extra} rounds={a.rounds} output.dir={run_dir}", 10, work / "home")
        (work / "flwr.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise SystemExit(f"secagg run {name} failed; see {work / 'flwr.log'}")
        rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
        secs = [r["round_seconds"] for r in rows]
        out[name] = {
            "seconds_per_round": sum(secs) / len(secs),
            "seconds_per_round_from_round_2": sum(secs[1:]) / len(secs[1:]),
            "final_accuracy": rows[-1]["global_accuracy"],
            "round_seconds": secs,
        }
        models[name] = torch.load(run_dir / "model_final.pt")
        print(name, json.dumps(out[name]), flush=True)
    out["secure_to_plain_round_ratio"] = (
        out["secure"]["seconds_per_round_from_round_2"]
        / out["plain"]["seconds_per_round_from_round_2"]
    )
    out["max_abs_model_difference"] = max(
        float((models["plain"][k].double() - models["secure"][k].double()).abs().max())
        for k in models["plain"]
        if models["plain"][k].is_floating_point()
    )
    a.out.write_text(json.dumps(out, indent=1))
    print(
        json.dumps({k: out[k] for k in ("secure_to_plain_round_ratio", "max_abs_model_difference")})
    )


if __name__ == "__main__":
    main()
