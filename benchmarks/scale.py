"""Scale: FedAvg and ZDA on federations of 100 to 10,000 simulated clients, 10 sampled per
round, through `flwr run .` (Flower's simulation engine), beside Flower's own floor (a
trivial app, ``benchmarks/floor_app``: no data, no model), in one invocation.

    .venv/bin/python -m benchmarks.scale --clients 100,1000,10000 --floor
    .venv/bin/python -m benchmarks.scale --clients 1000 --algorithms fedavg \
        --extra server.partition_map=query --append     # the queried start-up, for contrast

Fashion-MNIST, Dirichlet α=0.3 (self-balancing, at least 5 samples per client, so that
1000 clients can be drawn), 5 rounds, 10 clients train per round and 10 are evaluated
(every client in the last round, at most ``server.final_evaluate`` = 1000 of them). Per row:

- ``peak_rss_gb``: the largest sum of resident memory over every process of the run (the
  `flwr run` CLI, the local SuperLink, the simulation/ServerApp process, Ray and its
  ClientApp actors), sampled every 0.5 s, as proportional set size (a page shared by k
  processes counts 1/k in each), so the sum is the run's own footprint;
- ``peak_gb_by_role``: that peak split into the ServerApp's process (``serverapp``, with
  the simulation's Ray driver), the ClientApp actors, Flower's SuperLink/SuperExec/CLI and
  the rest of Ray;
- ``seconds_per_round``: mean round time over rounds 1..R-1 (round R also scores every
  client of the federation, which grows with its size by design); round 1 includes each
  Ray actor's first load of the data and partitioning;
- ``seconds_to_first_round``: from launching `flwr run` until round 1 starts (start-up, the
  ServerApp's data and partitioning, asking every SuperNode for its partition), measured as
  the time its first metrics row appears minus that round's duration (so it also holds
  round 1's central evaluation, about a second, and up to 0.5 s of polling);
- ``partition_map`` (how the server learnt each SuperNode's partition: ``assign``, no
  message, or ``query``, one message per node), ``partition_map_seconds`` and
  ``data_seconds`` (the ServerApp's data load and partitioning), from its summary.json;
- ``warm_fraction``: of all samples inverted from round 3 on — by clients (ZDAC), by the
  server for ZDAC's bank, and by the server for ZDAS — the share that started from a pool
  instead of noise (null for fedavg).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

from benchmarks.yardstick import RESULTS, ROOT
from fedcore.config import load_config
from scripts.proctree import kill_tree
from scripts.simulate import BIN, federation_config, flwr_env, run_status, simulate

FLOOR_APP = ROOT / "benchmarks" / "floor_app"
BASE = (
    "partition.alpha=0.3 partition.self_balancing=true partition.min_partition_size=5 "
    "partition.client_test_size=200 zdas.share_label_counts=true"
)


def _pss(proc: Path) -> int:
    """Proportional set size of one process in bytes."""
    for line in (proc / "smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return 0


def _processes() -> dict[int, tuple[int, int, str]]:
    """``pid -> (parent pid, proportional resident bytes, command line)`` from /proc."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            out[int(d.name)] = (ppid, _pss(d), cmd)
        except (OSError, ValueError, IndexError):
            continue
    return out


ROLES = (  # (role, a command-line fragment), first match wins; the rest is "ray"
    ("serverapp", "flwr-simulation"),
    ("clientapps", "ClientAppActor"),
    ("flower", "flower-super"),
    ("flower", "flwr "),
)


def role(cmd: str) -> str:
    """Which part of a run a process is (for the memory breakdown)."""
    return next((r for r, frag in ROLES if frag in cmd), "ray")


def run_rss(root: int, marker: str) -> tuple[int, dict[str, int]]:
    """Memory of ``root``, every process whose command line holds ``marker`` (the run's
    Flower home), and all their descendants (see ``_processes``), in all and by role."""
    procs = _processes()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    todo = [root] + [pid for pid, (_, _, cmd) in procs.items() if marker in cmd]
    seen: set[int] = set()
    while todo:
        pid = todo.pop()
        if pid in seen or pid not in procs:
            continue
        seen.add(pid)
        todo += children.get(pid, [])
    parts: dict[str, int] = {}
    for p in seen - {root}:
        parts[role(procs[p][2])] = parts.get(role(procs[p][2]), 0) + procs[p][1]
    return sum(parts.values()), parts


class Watch(threading.Thread):
    """Samples the run's memory and notes when its first round row appears."""

    def __init__(self, home: Path, metrics: Path) -> None:
        super().__init__(daemon=True)
        self.home, self.metrics = home, metrics
        self.t0 = time.perf_counter()
        self.peak = 0
        self.parts: dict[str, int] = {}  # the peak's memory by role
        self.first_row: float | None = None
        self.done = threading.Event()

    def run(self) -> None:
        me = os.getpid()
        while not self.done.wait(0.5):
            total, parts = run_rss(me, str(self.home))
            if total > self.peak:
                self.peak, self.parts = total, parts
            if self.first_row is None and self.metrics.is_file() and self.metrics.stat().st_size:
                self.first_row = time.perf_counter() - self.t0


def warm_fraction(rows: list[dict]) -> float | None:
    """Warm share of every sample inverted from round 3 on (clients and server)."""
    warm = total = 0.0
    for r in rows[2:]:
        warm += r.get("train_inv_warm_count", 0.0)
        total += r.get("train_syn_count", 0.0)
        for side in ("zdas", "zdac_bank"):  # fraction x samples of the server's inversions
            n = r.get(f"train_{side}_samples", 0.0)
            warm += r.get(f"train_{side}_warm_fraction", 0.0) * n
            total += n
    return warm / total if total else None


def run_one(
    algorithm: str, clients: int, rounds: int, work: Path, extra: str = ""
) -> tuple[dict, list[dict]]:
    """One row (and the run's metric rows): ``algorithm`` on ``clients`` simulated
    SuperNodes, 10 sampled per round; ``extra`` overrides go last."""
    shutil.rmtree(work, ignore_errors=True)
    run_dir = work / "run"
    fraction = min(1.0, 10 / clients)
    overrides = (
        f"algorithm={algorithm} rounds={rounds} {BASE} server.fraction_train={fraction} "
        f"server.fraction_evaluate={fraction} name=scale-{algorithm}-{clients} "
        f"output.dir={run_dir} {extra}"
    )
    watch = Watch(work / "home", run_dir / "metrics.jsonl")
    watch.start()
    try:
        proc = simulate(overrides, clients, work / "home", timeout=3000)
    finally:
        watch.done.set()
        watch.join()
    (work / "flwr.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0 or not (run_dir / "summary.json").is_file():
        raise RuntimeError(f"{algorithm} on {clients} clients failed; see {work / 'flwr.log'}")
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((run_dir / "summary.json").read_text())
    row = timing(algorithm, clients, fraction, rows, watch)
    row |= {k: summary.get(k) for k in ("partition_map", "partition_map_seconds", "data_seconds")}
    row["warm_fraction"] = None if algorithm == "fedavg" else warm_fraction(rows)
    return row, rows


def timing(algorithm: str, clients: int, fraction: float, rows: list[dict], watch: Watch) -> dict:
    """The row's memory and time columns, the same for fedzda's runs and the floor's."""
    seconds = [r["round_seconds"] for r in rows]
    first = watch.first_row if watch.first_row is not None else float("nan")
    return {
        "algorithm": algorithm,
        "clients": clients,
        "fraction_train": fraction,
        "rounds": len(rows),
        "peak_rss_gb": round(watch.peak / 2**30, 3),
        "peak_gb_by_role": {k: round(v / 2**30, 3) for k, v in sorted(watch.parts.items())},
        "seconds_per_round": round(sum(seconds[:-1]) / max(len(seconds) - 1, 1), 2),
        "seconds_to_first_round": round(first - seconds[0], 1),
        "partition_map": None,
        "partition_map_seconds": None,
        "data_seconds": None,
        "warm_fraction": None,
    }


def run_floor(clients: int, rounds: int, work: Path) -> dict:
    """Flower's own floor: the trivial app on ``clients`` simulated SuperNodes, 10 messaged
    per round, measured as :func:`run_one` measures fedzda."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    home, out = work / "home", work / "rounds.jsonl"
    federation = federation_config(clients, load_config().simulation)  # as fedzda's rows
    cmd = [str(BIN / "flwr"), "run", str(FLOOR_APP), "--stream",
           "--federation-config", federation,
           "--run-config", f"rounds={rounds} per-round=10 nodes={clients} out='{out}'"]  # fmt: skip
    watch = Watch(home, out)
    home.mkdir()
    env = flwr_env(home)
    watch.start()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=3000)  # fmt: skip
        status = run_status(env) if proc.returncode == 0 else None
    finally:
        watch.done.set()
        watch.join()
        kill_tree(f"flower-superlink.*{re.escape(str(home))}/")
    (work / "flwr.log").write_text(proc.stdout + proc.stderr)
    rows = [json.loads(x) for x in out.read_text().splitlines()] if out.is_file() else []
    if status != "finished:completed" or len(rows) != rounds:
        raise RuntimeError(f"the floor on {clients} nodes failed; see {work / 'flwr.log'}")
    return timing("flower-floor", clients, min(1.0, 10 / clients), rows, watch)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", default="100,1000,10000")
    ap.add_argument("--algorithms", default="fedavg,zda")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--floor", action="store_true", help="also Flower's floor at each size")
    ap.add_argument("--extra", default="", help="run-config overrides for every fedzda row")
    ap.add_argument("--append", action="store_true", help="add the rows to --out's rows")
    ap.add_argument("--out", type=Path, default=RESULTS / "scale.json")
    a = ap.parse_args()
    if a.rounds < 3:
        raise SystemExit("--rounds must be >= 3 (the warm fraction counts rounds 3 on)")
    rows = json.loads(a.out.read_text())["rows"] if a.append and a.out.is_file() else []
    tag = "-" + re.sub(r"[^\w.=-]+", "_", a.extra) if a.extra else ""
    for clients in [int(c) for c in a.clients.split(",")]:
        runs = [x for x in a.algorithms.split(",") if x] + (["flower-floor"] if a.floor else [])
        for algorithm in runs:
            work = RESULTS / "work" / "scale" / f"{algorithm}-{clients}{tag}"
            if algorithm == "flower-floor":
                row = run_floor(clients, a.rounds, work)
            else:
                row, _ = run_one(algorithm, clients, a.rounds, work, a.extra)
            row["extra"] = "" if algorithm == "flower-floor" else a.extra
            print(json.dumps(row), flush=True)
            rows.append(row)
            a.out.write_text(json.dumps({"rows": rows}, indent=1))  # each row at once
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
