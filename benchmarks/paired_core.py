"""The paired comparison's cells through the core round loop (no Flower, no Ray), for a
machine that has a GPU but no Flower. A cell has the run-config of ``benchmarks.paired``'s
cell of the same name (the method's tuned pick, the seed's partition and sampled clients);
the global model is evaluated on the test set every round and, after the last round, on
every client's own test set, as the Flower run's final federated evaluation does.

Everything runs at one torch thread (float sums depend on the count; at one thread the
first rounds match the Flower cells, see docs/benchmarks.md). Cells run in a pool of
worker processes and each finished (or failed) cell is appended to a JSON-lines file at
once; a deadline stops the pool, keeps what finished and exits with 3.

    python -m benchmarks.paired_core --check fedlc-dir0.1-s0        # CPU, 2 rounds, vs Flower
    python -m scripts.gpu_check --prepare --full                    # the data as an npz pair
    python -m benchmarks.paired_core --methods fedprox,scaffold --workers 16 \\
        --data benchmarks/results/work/gpu/full --out cells.jsonl --deadline 540
    python -m benchmarks.paired_core --adopt cells.jsonl     # into benchmarks/results/paired
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import active_children, get_context
from pathlib import Path

import numpy as np
import torch

from benchmarks.fmnist100 import FMNIST100
from benchmarks.paired import OUT, ROUNDS, cell_name, cells, is_current, setting
from fedcore.config import ExperimentConfig, load_config
from fedcore.federation import build_federation
from fedcore.metrics import fairness_summary
from fedcore.provenance import platform_info
from fedcore.round import run_rounds
from fedcore.training import evaluate


def run_cell(name: str, rounds: int = ROUNDS, data: str = "", extra: str = "") -> dict:
    """One paired cell by name through the core round loop on CUDA if there is one, else CPU.
    ``data``: the common stem of an npz pair (``<stem>-train.npz``) instead of the built-in
    Fashion-MNIST. ``extra``: run-config overrides after the cell's own (a lever trial)."""
    method, partition, seed = next(c for c in cells() if cell_name(*c) == name)
    override = setting(method)
    keys = f"{FMNIST100.overrides(method, partition, seed, rounds)} {override} {extra}".strip()
    if data:
        keys += f" data.dataset=npz data.path={data}-train.npz data.test_path={data}-test.npz"
    row = {"algorithm": method, "partition": partition, "seed": seed, "rounds": rounds,
           "data": data or "fashion-mnist", "setting": override, "extra": extra}  # fmt: skip
    return row | core_run(keys, FMNIST100.clients)


def core_run(keys: str, clients: int, every: int = 10) -> dict:
    """One run-config (``keys``) on ``clients`` clients through the core round loop, at one
    torch thread: the global model evaluated on the test set every round and, after the
    last round, on every client's own test set, as the Flower run's final federated
    evaluation does. Progress is printed every ``every`` rounds."""
    torch.set_num_threads(1)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = load_config(None, keys).with_clients(clients)
    t0 = time.perf_counter()
    fed = build_federation(cfg)
    accuracy, seconds, left_out = [], [], []
    for r in run_rounds(cfg, fed, device):
        accuracy.append(float(evaluate(r.model, fed.test, device=device)["accuracy"]))
        seconds.append(r.seconds)
        left_out.append({"sampled": r.partitions, "left_out": list(r.step.left_out)})
        if r.server_round % every == 0:
            note = f"acc {accuracy[-1]:.4f}, {seconds[-1]:.2f} s (train + aggregate)"
            print(f"{cfg.name} s{cfg.seed} round {r.server_round}: {note}", flush=True)
    model = r.model
    clients_acc = [  # every client, as Flower's final evaluation up to server.final_evaluate
        float(evaluate(model, fed.client_datasets(pid)[1], device=device)["accuracy"])
        for pid in range(cfg.num_clients)
    ]
    return {
        "command": keys,
        "path": "core round loop (benchmarks.paired_core)",
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "platform": platform_info(),
        "final_accuracy": accuracy[-1],
        "accuracy_per_round": accuracy,
        "round_seconds": seconds,
        "seconds_per_round": float(np.mean(seconds)),
        "wall_seconds": time.perf_counter() - t0,
        **fairness_summary(clients_acc),
        "client_accuracies": clients_acc,
    } | _attack_record(cfg, left_out)


def _attack_record(cfg: ExperimentConfig, left_out: list[dict]) -> dict:
    """With an attack or a screen: who attacked, and each round's sample and left-out models."""
    if cfg.attack.kind == "none" and not any(r["left_out"] for r in left_out):
        return {}
    attackers = sorted(cfg.attack.attackers(cfg.num_clients, cfg.seed))
    return {"attackers": attackers, "screen_per_round": left_out}


def check(name: str, rounds: int, data: str = "") -> None:
    """Compare the first ``rounds`` global accuracies with the Flower cell of that name."""
    flower = json.loads((OUT / f"{name}.json").read_text())["accuracy_per_round"][:rounds]
    core = run_cell(name, rounds, data)["accuracy_per_round"]
    print(json.dumps({"flower": flower, "core": core, "identical": flower == core}))


def run_pool(
    names: list[str],
    rounds: int,
    workers: int,
    data: str,
    out: Path,
    deadline: float,
    extra: str = "",
) -> None:
    """Run ``names`` in ``workers`` processes, appending each finished cell to ``out`` (a
    cell already there with the same rounds, data, extra and current pick, and no error, is
    skipped)."""
    t0, done = time.monotonic(), set()
    if out.is_file():
        rows = [json.loads(x) for x in out.read_text().splitlines() if x.strip()]
        want = data or "fashion-mnist"
        done = {
            r["cell"]
            for r in rows
            if "error" not in r
            and r.get("rounds") == rounds
            and r.get("data") == want
            and r.get("extra", "") == extra
            and is_current(r)
        }
    todo = [n for n in names if n not in done]
    pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"))
    futures = {pool.submit(run_cell, n, rounds, data, extra): n for n in todo}
    pending = set(futures)
    while pending:
        left = deadline - (time.monotonic() - t0)
        finished, pending = wait(pending, timeout=max(left, 0), return_when=FIRST_COMPLETED)
        for f in finished:
            row = {"cell": futures[f], "workers": workers, "host": platform.node()}
            try:
                row |= f.result()
                note = f"{row['final_accuracy']:.4f}, {row['seconds_per_round']:.2f} s/round"
            except Exception as e:  # a failed cell is recorded; the others go on
                row["error"] = note = f"{type(e).__name__}: {e}"
            with out.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(f"{time.monotonic() - t0:6.0f} s  {row['cell']}: {note}", flush=True)
        if not finished:
            print(f"deadline: {len(pending)} cells unfinished", flush=True)
            for p in active_children():
                p.kill()
            os._exit(3)
    pool.shutdown()


def adopt(path: Path) -> list[str]:
    """Save the full-length, error-free cells of a JSON-lines file (``run_pool``'s) on the
    full Fashion-MNIST training set (built in, or a ``--full`` npz) as the paired
    comparison's cells, unless a cell of the current pick is already there; returns the
    names saved. The cell keeps its ``path`` and ``device``, which the report shows."""
    saved = []
    for line in path.read_text().splitlines():
        row = json.loads(line) if line.strip() else {}
        name = row.get("cell", "")
        if "error" in row or row.get("rounds") != ROUNDS or row.get("extra", ""):
            continue
        data = row.get("data", "")
        if data != "fashion-mnist" and Path(data).name != "full":
            print(f"not adopted: {name} ran on {data!r}, not the full training set")
            continue
        if not is_current(row):
            print(f"not adopted: {name} ran {row.get('setting')!r}, not the current pick")
            continue
        out = OUT / f"{name}.json"
        if out.is_file() and is_current(json.loads(out.read_text())):
            continue
        out.write_text(json.dumps(row, indent=2))
        saved.append(name)
    return saved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", default="", help="a cell name: compare with its Flower cell")
    ap.add_argument("--adopt", type=Path, help="save a JSON-lines file's cells as paired cells")
    ap.add_argument("--rounds", type=int, default=0, help="default: 2 with --check, else 50")
    ap.add_argument("--methods", default="", help="comma-separated; default: all")
    ap.add_argument("--cells", default="", help="comma-separated cell names (not --methods)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--data", default="", help="npz pair stem (<stem>-train.npz, -test.npz)")
    ap.add_argument("--out", type=Path, default=Path("paired_core.jsonl"))
    ap.add_argument("--deadline", type=float, default=1e9, help="seconds, then stop")
    ap.add_argument("--extra", default="", help="overrides after the cell's own (a lever trial)")
    a = ap.parse_args()
    if a.adopt:
        print("adopted:", ", ".join(adopt(a.adopt)) or "none")
        return
    if a.check:
        check(a.check, a.rounds or 2, a.data)
        return
    known = sorted({c[0] for c in cells()})
    methods = a.methods.split(",") if a.methods else known
    if unknown := set(methods) - set(known):
        ap.error(f"no methods {sorted(unknown)} in the paired comparison: {known}")
    names = [cell_name(*c) for m in methods for c in cells() if c[0] == m]  # methods' order
    if a.cells:
        names = a.cells.split(",")
        if unknown := set(names) - {cell_name(*c) for c in cells()}:
            ap.error(f"no cells {sorted(unknown)}; see python -m benchmarks.paired --list")
    run_pool(names, a.rounds or ROUNDS, a.workers, a.data, a.out, a.deadline, a.extra)


if __name__ == "__main__":
    main()
