"""How close ZDAS's synthetic samples come to each client's real images.

    .venv/bin/python -m benchmarks.studies.leakage  # writes benchmarks/results/leakage.json

ZDAS on 10 clients (Fashion-MNIST, #C=1 and Dirichlet 0.1, every client every round,
3 rounds) through `flwr run .` with ``output.leakage=true``: every round the server measures,
for each client model's synthetic samples, the nearest real training image of that client
(SSIM, PSNR of that image, cosine similarity of penultimate features of the global model),
beside the baseline of other clients' real images of the same classes. The JSON keeps the
per-round means over clients and the last round's per-client rows; the closest pairs of the
last round are copied next to it as PNGs.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from benchmarks.yardstick import PARTITIONS, RESULTS
from scripts.simulate import simulate

SETTINGS = "algorithm=zdas zdas.share_label_counts=true output.leakage=true"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--partitions", default="c1,dir0.1")
    ap.add_argument("--out", type=Path, default=RESULTS / "leakage.json")
    a = ap.parse_args()
    out: dict = {"clients": 10, "rounds": a.rounds, "settings": SETTINGS, "partitions": {}}
    if a.out.is_file():  # keep the partitions not re-run this time
        out["partitions"] = json.loads(a.out.read_text()).get("partitions", {})
    for part in a.partitions.split(","):
        work = RESULTS / "work" / "leakage" / part
        run_dir = work / "run"
        shutil.rmtree(run_dir, ignore_errors=True)
        overrides = f"{SETTINGS} rounds={a.rounds} {PARTITIONS[part]} output.dir={run_dir}"
        proc = simulate(overrides, 10, work / "home")
        (work / "flwr.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise SystemExit(f"leakage run {part} failed; see {work / 'flwr.log'}")
        rounds = [json.loads(x) for x in (run_dir / "leakage.jsonl").read_text().splitlines()]
        out["partitions"][part] = {
            "mean_per_round": [{"round": r["round"], **r["mean"]} for r in rounds],
            "last_round_clients": rounds[-1]["clients"],
        }
        png = run_dir / "images" / f"round{a.rounds:03d}_leakage.png"
        if png.is_file():
            shutil.copy(png, a.out.parent / f"leakage_{part}.png")
        print(part, json.dumps(out["partitions"][part]["mean_per_round"][-1]), flush=True)
    a.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
