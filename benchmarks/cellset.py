"""The command line every fixed set of reproducible cells shares (``heldout``, ``shapes``):
list the cells, run the missing ones one at a time in reproducible mode (each saved at once,
so a set completes over several sittings), rebuild the set's markdown report."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from fedcore import reproducible

Cell = tuple


def main(
    doc: str,
    cells: Sequence[Cell],
    name: Callable[..., str],
    run: Callable[..., dict],
    out: Path,
    report: Callable[[list[dict]], str],
    report_path: Path,
) -> int:
    """``--cell NAME``, ``--list``, ``--report``; without them: run every missing cell."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--cell", default="", help="one cell by name (see --list)")
    ap.add_argument("--list", action="store_true", help="print the cells' names and stop")
    ap.add_argument("--report", action="store_true", help=f"only rebuild {report_path.name}")
    a = ap.parse_args()
    todo = [c for c in cells if not a.cell or name(*c) == a.cell]
    if a.cell and not todo:
        ap.error(f"no cell {a.cell!r}; see --list")
    if a.list:
        print("\n".join(name(*c) for c in todo))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    if not a.report:
        if not reproducible.enabled():
            print(f"these cells run in reproducible mode: set {reproducible.ENV}=1",
                  file=sys.stderr)  # fmt: skip
            return 2
        for c in todo:
            path = out / f"{name(*c)}.json"
            if path.is_file():
                print(f"skip {path.name} (done)")
                continue
            print(f"run  {path.stem} ...", flush=True)
            path.write_text(json.dumps(run(*c), indent=2))  # saved at once: resumable
    rows = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    report_path.write_text(report(rows))
    return 0
