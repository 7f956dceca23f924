"""Training and inversion throughput of two torch builds, side by side on this machine.

Runs ``benchmarks.studies.inversion_speed --throughput-only`` alternately under each interpreter
(``--repeats`` times each, interleaved so drift hits both alike) and prints each build's
mean sample-steps/s and the second build's over the first's.

    python -m benchmarks.studies.torch_builds --python A/bin/python --python B/bin/python \\
        [--repeats 2] [--out benchmarks/results/torch_builds.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np

KEYS = ("train_sample_steps_per_s", "inversion_sample_steps_per_s")


def measure(python: str) -> dict:
    """One throughput run under ``python`` (this checkout on its path)."""
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "r.json"
        study = "benchmarks.studies.inversion_speed"
        cmd = [python, "-m", study, "--throughput-only", "--out", str(out)]
        subprocess.run(cmd, check=True, cwd=Path(__file__).resolve().parents[2])
        return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", action="append", required=True, help="give it twice")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    if len(a.python) != 2:
        ap.error("--python: give exactly two interpreters")
    runs: dict[str, list[dict]] = {p: [] for p in a.python}
    for _ in range(a.repeats):
        for p in a.python:
            runs[p].append(measure(p))
    builds = []
    for p in a.python:
        row: dict = {"python": p, "torch": runs[p][0]["torch"]}
        for batch in ("batch32", "batch256"):
            for key in KEYS:
                values = [r[batch][key] for r in runs[p]]
                row[f"{batch}_{key}"] = float(np.mean(values))
                row[f"{batch}_{key}_runs"] = [round(v) for v in values]
        builds.append(row)
    base, other = builds
    ratios = {k: other[k] / base[k] for k in base if k.startswith("batch") and "_runs" not in k}
    for k, r in ratios.items():
        print(
            f"{k:>38}: {base[k]:6.0f} {base[k + '_runs']} ({base['torch']}) vs "
            f"{other[k]:6.0f} {other[k + '_runs']} ({other['torch']}) = {r:.3f}x"
        )
    if a.out:
        result = {"repeats": a.repeats, "builds": builds, "second_over_first": ratios}
        Path(a.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
