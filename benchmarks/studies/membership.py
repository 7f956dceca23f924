"""Membership leakage of ZDAS's synthetic samples, at the first and the last round of a
50-round FMNIST-100 run (the yardstick's federation and ZDAS settings) on Dirichlet 0.1 and
#C=2.

    .venv/bin/python -m benchmarks.studies.membership  # writes benchmarks/results/leakage.json

For every client model inverted in those rounds: does the distance to the nearest synthetic
sample tell the client's training images apart from unseen test images of the same class
mix? The AUC per client (``fedcore.membership``; 0.5: no signal) in pixel space and in the
feature space of a model trained on one half of the test split (5 epochs, seeded; the
non-members come from the other half, so the feature model has seen neither members nor
non-members), beside the run's similarity figures (``leakage.jsonl``); the closest pairs
of the last round are copied next to the JSON as PNGs. The JSON's ``membership`` section
is added to what the similarity study (``benchmarks.studies.leakage``) wrote.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

from benchmarks.fmnist100 import FMNIST100
from benchmarks.yardstick import RESULTS
from fedcore.config import load_config
from fedcore.federation import build_federation
from fedcore.leakage import penultimate
from fedcore.losses import train_local
from fedcore.membership import client_membership, summarise
from fedcore.models import build_model
from fedcore.training import TrainConfig
from scripts.simulate import simulate

ROUNDS = 50
SETTINGS = "algorithm=zdas output.leakage=true"


def test_halves(n: int) -> tuple[list[int], list[int]]:
    """A seeded split of the test split: (feature-model half, non-member half)."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0)).tolist()
    return order[: n // 2], order[n // 2 :]


def feature_model(cfg, path: Path) -> torch.nn.Module:
    """The fixed feature model: the CNN trained on one half of the test split (cached)."""
    fed = build_federation(cfg)
    model = build_model("cnn", fed.train.spec.channels, fed.train.spec.num_classes)
    if path.is_file():
        model.load_state_dict(torch.load(path))
        return model
    torch.manual_seed(0)
    half = fed.test.subset(test_halves(len(fed.test))[0])
    train_local(model, half, TrainConfig(local_epochs=5), seed=0)
    torch.save(model.state_dict(), path)
    return model


def run_partition(part: str, work: Path, feature: torch.nn.Module) -> dict:
    """One 50-round ZDAS run with leakage on; membership AUCs of its first and last round."""
    run_dir = work / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    overrides = FMNIST100.overrides("zdas", part, 0, ROUNDS) + f" {SETTINGS} output.dir={run_dir}"
    proc = simulate(overrides, FMNIST100.clients, work / "home")
    (work / "flwr.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"membership run {part} failed; see {work / 'flwr.log'}")
    cfg = load_config(None, overrides).with_clients(FMNIST100.clients)
    fed = build_federation(cfg)
    embed = lambda x: penultimate(feature, x)  # noqa: E731
    pool = fed.test.subset(test_halves(len(fed.test))[1])
    out: dict = {"overrides": overrides, "rounds": {}}
    for rnd in (1, ROUNDS):
        kept = torch.load(run_dir / f"synthetic_round{rnd:03d}.pt")
        rows = {}
        for pid in sorted(set(kept["sources"].tolist())):
            ds = fed.client_datasets(pid)[0]
            mine = kept["x"][kept["sources"] == pid]
            rows[str(pid)] = client_membership(
                mine, (ds.x, ds.y), (pool.x, pool.y), embed, seed=rnd * 1000 + pid
            )
        out["rounds"][str(rnd)] = {"summary": summarise(list(rows.values())), "clients": rows}
    similarity = [json.loads(x) for x in (run_dir / "leakage.jsonl").read_text().splitlines()]
    ends = (1, ROUNDS)
    out["similarity"] = {str(r["round"]): r["mean"] for r in similarity if r["round"] in ends}
    png = run_dir / "images" / f"round{ROUNDS:03d}_leakage.png"
    if png.is_file():
        shutil.copy(png, RESULTS / f"leakage_membership_{part}.png")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--partitions", default="dir0.1,c2")
    ap.add_argument("--out", type=Path, default=RESULTS / "leakage.json")
    a = ap.parse_args()
    data = json.loads(a.out.read_text()) if a.out.is_file() else {}
    section = data.setdefault("membership", {"rounds": ROUNDS, "settings": SETTINGS})
    section.setdefault("partitions", {})
    work = RESULTS / "work" / "membership"
    work.mkdir(parents=True, exist_ok=True)
    feature = feature_model(
        load_config(None, "").with_clients(FMNIST100.clients), work / "feature.pt"
    )
    for part in a.partitions.split(","):
        section["partitions"][part] = run_partition(part, work / part, feature)
        for rnd, r in section["partitions"][part]["rounds"].items():
            print(part, "round", rnd, json.dumps(r["summary"]), flush=True)
        a.out.write_text(json.dumps(data, indent=1))  # saved per partition: resumable


if __name__ == "__main__":
    main()
