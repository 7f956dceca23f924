"""A Ray cluster of two nodes on this host (a head and a worker, each with its own CPU count)
running a `flwr run .` simulation: which ClientApps ran on which node.

    .venv/bin/python -m benchmarks.studies.ray_cluster  # -> benchmarks/results/ray_cluster.json

Starts ``ray start --head`` and ``ray start --address`` (1 CPU each, both on 127.0.0.1),
runs 2 FedAvg rounds with 4 SuperNodes and 1 CPU per ClientApp through
`flwr run .` with ``RAY_ADDRESS`` pointing at the head (Flower's Ray backend calls
``ray.init()``, which attaches to that cluster instead of starting its own), records each
ClientApp's Ray node (``FEDZDA_NODE_LOG``, see ``client_app.app.record_node``) and stops
every process it started (``ray stop``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from benchmarks.yardstick import RESULTS
from scripts.simulate import simulate

RAY = str(Path(sys.executable).parent / "ray")
PORT = 6390
SETTINGS = (
    "rounds=2 data.train_subset=2000 data.test_subset=500 partition.client_test_size=100 "
    "partition.alpha=1.0 name=ray-two-nodes"
)


def ray(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([RAY, *args], env=env, capture_output=True, text=True, timeout=180)


def nodes(env: dict[str, str]) -> list[dict]:
    """The cluster's live nodes (id, CPUs) as Ray reports them."""
    code = (
        "import json, ray; ray.init(address='auto', logging_level='ERROR');"
        "print(json.dumps([{'id': n['NodeID'], 'cpus': n['Resources'].get('CPU', 0),"
        " 'head': 'node:__internal_head__' in n['Resources']} for n in ray.nodes()"
        " if n['Alive']]))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=RESULTS / "ray_cluster.json")
    a = ap.parse_args()
    work = RESULTS / "work" / "ray_cluster"
    work.mkdir(parents=True, exist_ok=True)
    log = work / "nodes.jsonl"
    log.unlink(missing_ok=True)
    env = dict(os.environ, FEDZDA_NODE_LOG=str(log), RAY_ADDRESS=f"127.0.0.1:{PORT}")
    env.pop("RAY_ADDRESS")  # not for `ray start --head` itself
    head = ray("start", "--head", f"--port={PORT}", "--num-cpus=1", "--num-gpus=0",
               "--include-dashboard=false", "--node-ip-address=127.0.0.1", env=env)  # fmt: skip
    t0 = time.perf_counter()
    try:
        if head.returncode != 0:
            raise SystemExit(f"ray start --head failed:\n{head.stdout}{head.stderr}")
        worker = ray("start", f"--address=127.0.0.1:{PORT}", "--num-cpus=1", "--num-gpus=0",
                     "--node-ip-address=127.0.0.1", env=env)  # fmt: skip
        if worker.returncode != 0:
            raise SystemExit(f"ray start (worker) failed:\n{worker.stdout}{worker.stderr}")
        env["RAY_ADDRESS"] = f"127.0.0.1:{PORT}"
        cluster = nodes(env)
        os.environ.update(FEDZDA_NODE_LOG=str(log), RAY_ADDRESS=env["RAY_ADDRESS"])
        proc = simulate(f"{SETTINGS} output.dir={work / 'run'}", 4, work / "home")
        (work / "flwr.log").write_text(proc.stdout + proc.stderr)
    finally:
        stop = ray("stop", "--force", env=env)
    rows = [json.loads(x) for x in log.read_text().splitlines()] if log.is_file() else []
    per_node = Counter(r["ray_node"] for r in rows)
    result = {
        "command": f"python -m benchmarks.studies.ray_cluster ({SETTINGS}, 4 SuperNodes)",
        "nodes": cluster,
        "flwr_run_returncode": proc.returncode,
        "client_apps": rows,
        "client_apps_per_node": dict(per_node),
        "both_nodes_used": len(per_node) == 2 and all(per_node.values()),
        "ray_stop_returncode": stop.returncode,
        "seconds": time.perf_counter() - t0,
    }
    a.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "client_apps"}, indent=1))
    if proc.returncode != 0:
        raise SystemExit(f"flwr run failed; see {work / 'flwr.log'}")


if __name__ == "__main__":
    main()
