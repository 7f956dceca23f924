"""Every algorithm path's numbers, for refactors that must not move them: 3 rounds of eight
compositions on a small 6-client Fashion-MNIST federation through the core loop (ZDA with
shared and own banks, ZDAC paired and shuffled in with distillation, ZDAS with replay and
spread banks, ZDAS distilling, q-FedAvg with ZDAC, FedLC with FedProx), each round's test
accuracy, the last round's metrics and a checksum of the final model. The golden test
covers the Flower path of two methods; this covers the branches.

    FEDZDA_REPRODUCIBLE=1 .venv/bin/python -m benchmarks.studies.paths          # compare
    FEDZDA_REPRODUCIBLE=1 .venv/bin/python -m benchmarks.studies.paths --write  # record
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys

import torch

from benchmarks.yardstick import RESULTS
from fedcore import reproducible
from fedcore.config import load_config
from fedcore.federation import build_federation
from fedcore.provenance import platform_info
from fedcore.round import run_rounds
from fedcore.training import evaluate

OUT = RESULTS / "paths.json"
BASE = (
    "data.train_subset=1500 data.test_subset=300 partition.client_test_size=50 "
    "partition.alpha=0.5 rounds=3 train.local_epochs=1 zdac.start_round=1 zdac.budget=0.2 "
    "zdac.inversion.steps=10 zdac.inversion.warm_steps=2 zdac.bank_per_class=4 "
    "zdas.samples_per_client=20 zdas.inversion.steps=10 zdas.inversion.warm_steps=2 "
    "zdas.bank_per_class=8"
)
CASES = {
    "zda-sampled": "algorithm=zda server.fraction_train=0.5",
    "zda-full": "algorithm=zda",
    "zdac-paired-kd": "algorithm=zdac zdac.paired_batch_size=16 zdac.kd_weight=0.5 "
    "zdac.weighting=missing-mass",
    "zdac-shuffled-kd": "algorithm=zdac zdac.kd_weight=0.5 zdac.bank=shared",
    "zdas-replay-spread": "algorithm=zdas+scaffold server.fraction_train=0.5 "
    "zdas.replay_per_class=16 zdas.bank_spread=true zdas.share_label_counts=true",
    "zdas-kd": "algorithm=zdas zdas.kd_weight=0.5 zdas.share_label_counts=true "
    "zdas.update_bn_stats=true",
    "qfedavg": "algorithm=qfedavg+zdac qfedavg.q=0.5",
    "fedlc-prox": "algorithm=fedlc+fedprox fedlc.tau=4 fedprox.mu=0.1",
}


def checksum(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k, v in state.items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def case(keys: str) -> dict:
    cfg = load_config(None, f"{BASE} {keys}").with_clients(6)
    fed = build_federation(cfg)
    acc, metrics, state = [], {}, ""
    for r in run_rounds(cfg, fed, torch.device("cpu")):
        acc.append(float(evaluate(r.model, fed.test)["accuracy"]))
        metrics = {k: round(v, 6) for k, v in sorted(r.metrics.items()) if "seconds" not in k}
        state = checksum(r.model.state_dict())
    return {"accuracy": acc, "state": state, "metrics": metrics}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help=f"record {OUT.name}")
    a = ap.parse_args()
    if not reproducible.enabled():
        print(f"run with {reproducible.ENV}=1", file=sys.stderr)
        return 2
    known = json.loads(OUT.read_text())["cases"] if OUT.is_file() else {}
    got, same = {}, True
    for name, keys in CASES.items():
        got[name] = case(keys)
        agrees = known.get(name) == got[name]
        same &= agrees
        print(f"{name}: {got[name]['accuracy']} {got[name]['state']} "
              f"{'== recorded' if agrees else 'DIFFERS' if name in known else 'new'}",
              flush=True)  # fmt: skip
    if a.write:
        OUT.write_text(json.dumps({"platform": platform_info(), "cases": got}, indent=1) + "\n")
        return 0
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
