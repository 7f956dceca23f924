"""Warm starts under client sampling: ZDA's server-side banks against per-client pools.

    .venv/bin/python -m benchmarks.studies.pools  # writes benchmarks/results/pools.json

100 clients, 10 sampled per round, the scale benchmark's federation, 6 rounds, run once with
``pool=auto`` (banks: ZDAS one class bank, ZDAC the server's bank of the global model) and
once with ``zdac.bank=per-client zdas.bank=per-client`` (each client's own pool, as with full
participation). Per setting: the warm fraction from round 3 on, and the inversion seconds
per round (every sampled client's ZDAC inversion, the server's ZDAS inversions and, with
banks, the server's inversion of the global model), mean over rounds 3..R.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.harness import RESULTS
from benchmarks.studies.scale import run_one

SETTINGS = {"banks": "", "client_pools": "zdac.bank=per-client zdas.bank=per-client"}


def inversion_seconds(row: dict) -> float:
    """Seconds of inversion in one round, client and server side."""
    clients = row.get("train_inv_seconds", 0.0) * row.get("train_replies", 0)
    return (
        clients + row.get("train_zdas_inv_seconds", 0.0) + row.get("train_zdac_bank_seconds", 0.0)
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--out", type=Path, default=RESULTS / "pools.json")
    a = ap.parse_args()
    out: dict = {"clients": a.clients, "sampled_per_round": 10, "rounds": a.rounds}
    for name, extra in SETTINGS.items():
        work = RESULTS / "work" / "pools" / name
        row, rows = run_one("zda", a.clients, a.rounds, work, extra)
        late = rows[2:]
        out[name] = {
            "warm_fraction_from_round_3": row["warm_fraction"],
            "inversion_seconds_per_round_from_round_3": sum(map(inversion_seconds, late))
            / len(late),
            "seconds_per_round": row["seconds_per_round"],
            "final_accuracy": rows[-1]["global_accuracy"],
        }
        print(name, json.dumps(out[name]), flush=True)
    a.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
