"""Any cell set's cells in a pool of worker processes through the core round loop, for a
machine with a GPU (and many cores) but no Flower. Each finished (or failed) cell is
appended at once to a JSON-lines file; a deadline stops the pool, keeps what finished and
exits with 3. ``--adopt`` saves a file's full, error-free, current cells into the set.

    python -m scripts.gpu_check --prepare --full                    # the data as an npz pair
    python -m benchmarks.pool paired --cell 'fedprox-*,scaffold-*' --workers 16 \\
        --data benchmarks/results/work/gpu/full --out cells.jsonl --deadline 540
    python -m benchmarks.pool paired --adopt cells.jsonl     # into benchmarks/results/paired
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import platform
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import active_children, get_context
from pathlib import Path

from benchmarks.harness import FULL, RESULTS, CellSet, flower_cell, run_cell, select, stamp
from fedcore import reproducible


def cellset(name: str) -> CellSet:
    return importlib.import_module(f"benchmarks.{name}").cellset()


def run_one(set_name: str, name: str, data: str, extra: str) -> dict:
    """One cell of a set, on an npz pair (``data``: the stem) and with ``extra`` overrides."""
    cell = cellset(set_name).cells[name]
    npz = f"data.dataset=npz data.path={data}-train.npz data.test_path={data}-test.npz"
    keys = f"{cell.keys} {npz if data else ''} {extra}"
    runner = None if cell.runner is flower_cell else cell.runner  # Flower's: the core loop
    row = run_cell(dataclasses.replace(cell, keys=keys, runner=runner), RESULTS / "work")
    return row | {"stamp": stamp(cell), "data": data or FULL[0], "extra": extra}


def run_pool(set_name: str, names: list[str], workers: int, data: str, extra: str,
             out: Path, deadline: float) -> None:  # fmt: skip
    """Run ``names`` in ``workers`` processes, appending each to ``out`` (a cell already
    there without error, with the same data and extra and the current stamp, is skipped)."""
    t0, cs, want = time.monotonic(), cellset(set_name), (data or FULL[0], extra)
    lines = out.read_text().splitlines() if out.is_file() else []
    done = {r["cell"] for r in map(json.loads, filter(str.strip, lines))
            if r.get("cell") in cs.cells and "error" not in r
            and (r.get("data"), r.get("extra")) == want
            and r.get("stamp") == stamp(cs.cells[r["cell"]])}  # fmt: skip
    pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"))
    futures = {pool.submit(run_one, set_name, n, data, extra): n for n in names if n not in done}
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


def adopt(cs: CellSet, path: Path, results: Path = RESULTS) -> list[str]:
    """Save a JSON-lines file's error-free cells without extra overrides, run on the full
    training set at the cell's current stamp, unless a current cell is already saved;
    returns the names saved."""
    saved = []
    for line in path.read_text().splitlines():
        row = json.loads(line) if line.strip() else {}
        name, cell = row.get("cell", ""), cs.cells.get(row.get("cell", ""))
        if cell is None or "error" in row or row.get("extra"):
            continue
        if Path(row.get("data", "")).name not in FULL or row.get("stamp") != stamp(cell):
            print(f"not adopted: {name} (data {row.get('data')!r}, or another run config)")
            continue
        kind = (row.get("platform") or {}).get("kind", "")
        if cs.reproducible and not kind.startswith("reproducible"):
            print(f"not adopted: {name} ran on {kind or 'an unrecorded platform'}, and "
                  f"{cs.name} cells must run in reproducible mode")  # fmt: skip
            continue
        out = results / cs.folder / f"{name}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.is_file() and json.loads(out.read_text()).get("stamp") == stamp(cell):
            continue
        out.write_text(json.dumps(row, indent=2))
        saved.append(name)
    return saved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("set", help="a cell set: paired, heldout, shapes, robustness, ...")
    ap.add_argument("--cell", default="", help="names or patterns, comma-separated")
    ap.add_argument("--adopt", type=Path, help="save a JSON-lines file's cells into the set")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--data", default="", help="npz pair stem (<stem>-train.npz, -test.npz)")
    ap.add_argument("--extra", default="", help="overrides after the cell's own (a trial)")
    ap.add_argument("--out", type=Path, default=Path("pool.jsonl"))
    ap.add_argument("--deadline", type=float, default=1e9, help="seconds, then stop")
    a = ap.parse_args()
    cs = cellset(a.set)
    if a.adopt:
        print("adopted:", ", ".join(adopt(cs, a.adopt)) or "none")
        return
    if cs.reproducible and not reproducible.enabled():
        ap.error(f"{a.set} cells run in reproducible mode: set {reproducible.ENV}=1")
    run_pool(a.set, select(cs, a.cell), a.workers, a.data, a.extra, a.out, a.deadline)


if __name__ == "__main__":
    main()
