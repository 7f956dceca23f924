"""CPUs per simulated ClientApp: the same run with 1 and with 2 CPUs per client, side by side.

    .venv/bin/python -m benchmarks.studies.client_cpus  # writes benchmarks/results/client_cpus.json

FedAvg and ZDA on the default federation (10 clients, Dirichlet 0.1), 3 rounds each, through
`flwr run .`; the settings alternate (1, 2, 1, 2, ...) so that drift of the machine's speed
hits both. Flower's default is 2 CPUs per ClientApp; ``simulation.client_cpus`` picks.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from benchmarks.harness import RESULTS
from scripts.simulate import simulate


def timed_run(algorithm: str, cpus: int, rounds: int, work: Path) -> list[float]:
    """Round seconds of one run with ``cpus`` CPUs per ClientApp."""
    shutil.rmtree(work, ignore_errors=True)
    run_dir = work / "run"
    overrides = (
        f"algorithm={algorithm} rounds={rounds} simulation.client_cpus={cpus} "
        f"zdas.share_label_counts=true name=cpus output.dir={run_dir}"
    )
    proc = simulate(overrides, 10, work / "home", timeout=1800)
    (work / "flwr.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0 or not (run_dir / "summary.json").is_file():
        raise RuntimeError(f"{algorithm} with {cpus} CPUs failed; see {work / 'flwr.log'}")
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["round_seconds"] for r in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--algorithms", default="fedavg,zda")
    ap.add_argument("--out", type=Path, default=RESULTS / "client_cpus.json")
    a = ap.parse_args()
    out: dict = {"rounds": a.rounds, "repeats": a.repeats, "clients": 10}
    for algorithm in a.algorithms.split(","):
        secs: dict[int, list[float]] = {1: [], 2: []}
        for rep in range(a.repeats):
            for cpus in (1, 2):
                work = RESULTS / "work" / "client_cpus" / f"{algorithm}-{cpus}-{rep}"
                secs[cpus] += timed_run(algorithm, cpus, a.rounds, work)
                print(algorithm, cpus, secs[cpus][-a.rounds :], flush=True)
        mean = {c: sum(s) / len(s) for c, s in secs.items()}
        out[algorithm] = {
            "seconds_per_round_1cpu": mean[1],
            "seconds_per_round_2cpus": mean[2],
            "two_to_one_ratio": mean[2] / mean[1],
        }
    a.out.write_text(json.dumps(out, indent=1))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
