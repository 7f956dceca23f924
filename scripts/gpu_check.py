"""GPU check: training and inversion throughput on CUDA against the CPU, and short FedAvg and
ZDA runs on the GPU through the core round loop (no Flower or Ray needed).

Here, once, to make the data the GPU machine cannot download (an ignored path to carry):

    .venv/bin/python -m scripts.gpu_check --prepare

On the GPU machine (its own torch; numpy is all else it needs), within 8 minutes:

    bash scripts/gpu_check.sh            # writes benchmarks/results/gpu.json

``--dry-run`` runs every step tiny on whatever device there is (the tests use it).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from fedcore.config import load_config
from fedcore.datasets import load_dataset
from fedcore.federation import build_federation
from fedcore.losses import train_local
from fedcore.models import build_model
from fedcore.round import run_rounds
from fedcore.schema import nest
from fedcore.training import TrainConfig, evaluate
from inversion import InversionConfig, invert

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
DATA = RESULTS / "work" / "gpu" / "fmnist.npz"


def prepare(path: Path = DATA, train: int = 30_000, test: int = 10_000) -> Path:
    """Fashion-MNIST train/test subsets as one npz pair (uint8 images) for the GPU machine."""
    s = load_dataset("fashion-mnist")
    path.parent.mkdir(parents=True, exist_ok=True)
    for split, ds, n in (("train", s.train, train), ("test", s.test, test)):
        std, mean = np.asarray(ds.std), np.asarray(ds.mean)
        x = ds.rows(slice(0, n)).numpy() * std[None, :, None, None] + mean[None, :, None, None]
        u8 = np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)
        np.savez_compressed(path.with_name(f"{path.stem}-{split}.npz"), x=u8, y=ds.y[:n].numpy())
    return path


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def throughput(device: torch.device, ds, steps: int) -> dict[str, float]:
    """Sample-steps/s of SGD training (batch 32 and 256) and of inversion (batch 256)."""
    out = {}

    def first(n: int):  # the first n samples, cycling through small data sets
        return ds.subset(np.arange(n) % len(ds))

    for batch in (32, 256):
        model = build_model("cnn", 1, 10)
        cfg = TrainConfig(batch_size=batch)
        train_local(model, first(batch * 3), cfg, device=device)  # warm-up
        _sync(device)
        t0 = time.perf_counter()
        train_local(model, first(batch * steps), cfg, device=device)
        _sync(device)
        out[f"train_batch{batch}"] = batch * steps / (time.perf_counter() - t0)
    labels = torch.arange(10).repeat(26)[:256]
    inv = InversionConfig(steps=steps, batch_size=256)
    invert(model, labels[:32], InversionConfig(steps=3), ds.spec, device=device)  # warm-up
    _sync(device)
    res = invert(model, labels, inv, ds.spec, device=device)
    out["inversion_batch256"] = res.sample_steps_per_s
    return out


def federated(keys: dict, clients: int, device: torch.device) -> dict:
    """A short run through the core round loop on ``device`` (``keys``: dotted config keys)."""
    cfg = load_config(None, nest(keys)).with_clients(clients)
    fed = build_federation(cfg)
    seconds, accuracy = [], []
    for r in run_rounds(cfg, fed, device):
        seconds.append(r.seconds)
        accuracy.append(float(evaluate(r.model, fed.test, device=device)["accuracy"]))
    return {"round_seconds": seconds, "accuracy": accuracy}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prepare", action="store_true", help="write the data npz and stop")
    full = "with --prepare: all 60,000 training images, stem 'full' (benchmarks.pool --data)"
    ap.add_argument("--full", action="store_true", help=full)
    ap.add_argument("--dry-run", action="store_true", help="every step tiny, any device")
    ap.add_argument("--out", type=Path, default=RESULTS / "gpu.json")
    ap.add_argument("--data", type=Path, default=DATA, help="the npz pair's common stem")
    a = ap.parse_args()
    train, test = (a.data.with_name(f"{a.data.stem}-{s}.npz") for s in ("train", "test"))
    if a.full and not a.prepare:
        ap.error("--full goes with --prepare")
    if a.prepare:
        if a.full:
            a.data = a.data.with_name("full.npz")
            train, test = (a.data.with_name(f"full-{s}.npz") for s in ("train", "test"))
        prepare(a.data, train=60_000 if a.full else 30_000)
        print(f"wrote {train} and {test}")
        return
    if not train.is_file():
        raise SystemExit(f"{train} is missing: run `python -m scripts.gpu_check --prepare`")
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    keys = {"data.dataset": "npz", "data.path": str(train), "data.test_path": str(test)}
    steps, rounds, clients = (5, 2, 3) if a.dry_run else (60, 5, 10)
    keys |= {"rounds": rounds, "partition.alpha": 0.1, "zdas.share_label_counts": True}
    if a.dry_run:
        keys |= {"data.train_subset": 600, "data.test_subset": 200}
        keys |= {"partition.client_test_size": 20, "zdac.inversion.steps": 5}
        keys |= {"zdas.inversion.steps": 5}
    ds = load_dataset("npz", str(train), str(test)).train
    out: dict = {
        "device": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
        "torch": torch.__version__,
        "dry_run": a.dry_run,
        "throughput": {"cpu": throughput(torch.device("cpu"), ds, steps)},
    }
    if cuda:
        out["throughput"]["cuda"] = throughput(device, ds, steps)
        cpu, gpu = out["throughput"]["cpu"], out["throughput"]["cuda"]
        out["throughput"]["cuda_to_cpu"] = {k: gpu[k] / cpu[k] for k in cpu}
    print(json.dumps(out["throughput"]), flush=True)
    out["device_runs"] = str(device)
    for method in ("fedavg", "zda"):
        out[method] = federated(keys | {"algorithm": method}, clients, device)
        print(method, json.dumps(out[method]), flush=True)
    mean = {k: float(np.mean(out[k]["round_seconds"])) for k in ("fedavg", "zda")}
    out["zda_to_fedavg_round_ratio"] = mean["zda"] / mean["fedavg"]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=1))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
