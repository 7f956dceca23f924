"""How low can the client spread go? Per-client accuracy of a centrally trained model on the
FMNIST-100 clients' own test sets, beside the final models of the FMNIST-100 cells.

Under Dirichlet 0.1 or #C=2 most clients' test sets hold one or two classes, so a client's
accuracy is close to the global model's accuracy on its classes: even a model trained on all
the data has a client spread, set by how unequal its per-class accuracies are (Fashion-MNIST's
shirts against its trousers). That spread is the floor the ``client std`` targets sit above.

For each partition (seed 0, 100 clients, the yardstick's client test sets) this scores a CNN
trained centrally (``--epochs`` passes over all 60 000 images; the same model and optimiser
as the yardstick) and every ``model_final.pt`` the FMNIST-100 cells left in
``benchmarks/results/work/cells100/ALG-PART-s0/run/``: test accuracy, per-class accuracy and
the clients' mean / std / worst-10 %. Writes ``benchmarks/results/client_floor.json``.

    .venv/bin/python -m benchmarks.studies.client_floor [--epochs 5]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torch import nn

from benchmarks.yardstick import PARTITIONS, RESULTS
from fedcore.config import load_config
from fedcore.federation import Federation, build_federation
from fedcore.losses import train_local
from fedcore.metrics import fairness_summary
from fedcore.models import build_model
from fedcore.training import TrainConfig

CELLS = RESULTS / "work" / "cells100"


def predictions(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Predicted labels (eval mode), in batches."""
    model.eval()
    with torch.no_grad():
        return torch.cat([model(x[i : i + 1024]).argmax(1) for i in range(0, len(x), 1024)])


def score(model: nn.Module, fed: Federation) -> dict:
    """Test accuracy, per-class accuracy and the clients' fairness summary."""
    x, y = fed.test.x, fed.test.y
    correct = (predictions(model, x) == y).numpy()
    labels = y.numpy()
    per_class = [float(correct[labels == c].mean()) for c in range(fed.test.num_classes)]
    clients = [float(correct[idx].mean()) for idx in fed.client_test]
    out = {"test_accuracy": float(correct.mean()), "per_class_accuracy": per_class}
    return out | {k: v for k, v in fairness_summary(clients).items() if "best" not in k}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=5, help="central passes over the train set")
    a = ap.parse_args()
    out: dict = {"epochs": a.epochs, "partitions": {}}
    central = None
    for part in ("dir0.1", "c2"):
        cfg = load_config(RESULTS.parent.parent / "configs" / "default.toml", PARTITIONS[part])
        fed = build_federation(cfg.with_clients(100))
        if central is None:  # the same model for both partitions (the union is the same)
            t0 = time.perf_counter()
            torch.manual_seed(0)
            central = build_model("cnn", 1, 10)
            train_local(central, fed.train, TrainConfig(local_epochs=a.epochs), seed=0)
            out["central_seconds"] = round(time.perf_counter() - t0, 1)
        rows = {"centralized": score(central, fed)}
        for path in sorted(CELLS.glob(f"*-{part}-s0/run/model_final.pt")):
            model = build_model("cnn", 1, 10)
            model.load_state_dict(torch.load(path, weights_only=True))
            rows[path.parts[-3].split("-")[0]] = score(model, fed)
        out["partitions"][part] = rows
        for name, r in rows.items():
            pc = np.round(r["per_class_accuracy"], 2).tolist()
            print(
                f"{part:7} {name:12} test {r['test_accuracy']:.3f}  clients mean "
                f"{r['client_acc_mean']:.3f} std {r['client_acc_std']:.3f} worst-10% "
                f"{r['client_acc_worst10']:.3f}  per class {pc}"
            )
    (RESULTS / "client_floor.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
