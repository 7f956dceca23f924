"""The golden numbers: README command 1's federation (``configs/compare.toml``: 100 clients,
#C=2, 10 sampled per round, 5 local epochs) for 2 rounds of FedAvg and of the recommended
zdas+scaffold at command 1's settings, in reproducible mode, through Flower and through the
core round loop.

``--write`` runs both paths, refuses when they differ, and writes ``tests/golden/demo.json``
(per round: global accuracy and loss; after the last round: every client's accuracy);
``tests/test_golden.py`` (slow tier) runs the Flower path and asserts the numbers exactly.
A change that must move them rewrites the file in the same commit, saying why.

    FEDZDA_REPRODUCIBLE=1 .venv/bin/python -m benchmarks.golden --write
    FEDZDA_REPRODUCIBLE=1 .venv/bin/python -m benchmarks.golden          # compare only
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from benchmarks.harness import GOLDEN, ROOT, Cell, code_version, core_run, flower_cell
from fedcore import reproducible
from fedcore.provenance import platform_info
from scripts.compare import METHODS as COMMAND1
from scripts.compare import parse_methods

EXPERIMENT = ROOT / "configs" / "compare.toml"
METHODS, ROUNDS, CLIENTS = ("fedavg", "zdas+scaffold"), 2, 100


def overrides(method: str) -> str:
    """The method as command 1 runs it, for ``ROUNDS`` rounds."""
    return f"algorithm={method} {parse_methods(COMMAND1)[method]} rounds={ROUNDS}"


def core(method: str) -> dict:
    """The run through the core round loop (this process, at its threads: one in
    reproducible mode)."""
    return _golden(core_run(overrides(method), CLIENTS, experiment=EXPERIMENT, threads=0))


def flower(method: str, home: Path) -> dict:
    """The run through `flwr run .` (Flower's simulation engine, a private SuperLink)."""
    cell = Cell(overrides(method), CLIENTS, experiment=EXPERIMENT)
    return _golden(flower_cell(cell, home / method))


def _golden(row: dict) -> dict:
    """A harness result as the golden file holds it: per round accuracy and loss, every
    client's final accuracy, seconds and platform."""
    pairs = zip(row["accuracy_per_round"], row["loss_per_round"], strict=True)
    return {"rounds": [{"accuracy": a, "loss": loss} for a, loss in pairs],
            "client_accuracies": row["client_accuracies"], "seconds": row["wall_seconds"],
            "platform": row["platform"]}  # fmt: skip


def numbers(run: dict) -> dict:
    """What must match exactly (seconds and platform left out)."""
    return {"rounds": run["rounds"], "client_accuracies": run["client_accuracies"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help=f"write {GOLDEN.relative_to(ROOT)}")
    a = ap.parse_args()
    if not reproducible.enabled():
        print(f"run with {reproducible.ENV}=1 (the golden numbers hold in reproducible mode)",
              file=sys.stderr)  # fmt: skip
        return 2
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.is_file() else {}
    out: dict = {"experiment": str(EXPERIMENT.relative_to(ROOT)), "clients": CLIENTS,
                 "platform": platform_info(), "code": code_version(), "methods": {}}  # fmt: skip
    ok, paths_agree = True, True
    with tempfile.TemporaryDirectory() as tmp:
        for m in METHODS:
            c, f = core(m), flower(m, Path(tmp))
            same = numbers(c) == numbers(f)
            known = golden.get("methods", {}).get(m)
            agrees = known is None or numbers(known) == numbers(f)
            ok &= same and agrees
            paths_agree &= same
            print(f"{m}: core {c['seconds']:.0f} s, flower {f['seconds']:.0f} s; accuracy per "
                  f"round {[r['accuracy'] for r in f['rounds']]}; core == flower: {same}; "
                  f"== golden: {agrees if known else 'no golden yet'}", flush=True)  # fmt: skip
            out["methods"][m] = numbers(f) | {"core_seconds": c["seconds"],
                                              "flower_seconds": f["seconds"]}  # fmt: skip
    if a.write:
        if not paths_agree:
            print("not written: the core loop and Flower differ", file=sys.stderr)
            return 1
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {GOLDEN.relative_to(ROOT)}")
        return 0
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
