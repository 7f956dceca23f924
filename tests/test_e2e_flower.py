"""End to end through Flower's simulation engine, exactly as `flwr run .` runs it.

The FedAvg run is the fast tier's one smoke test (ServerApp and ClientApps through Flower's
simulation); the other runs are in the slow tier (``pytest --slow``)."""

import csv
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from fedcore.config import ConfigError, load_config
from scripts.simulate import simulate
from tests.conftest import core_numbers, flwr_run

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.e2e


def test_fedavg_simulation_writes_a_complete_run_directory(tmp_path):
    # not `slow`: the cheapest full `flwr run` (2 rounds, 3 SuperNodes), run in the fast tier
    run = flwr_run(
        tmp_path,
        "rounds=2 partition.num_partitions=3 partition.alpha=1.0 data.train_subset=3000 "
        "data.test_subset=1000 partition.client_test_size=300 name=e2e",
        num_supernodes=3,
    )
    for name in (
        "config.yaml",
        "meta.json",
        "metrics.jsonl",
        "metrics.csv",
        "summary.json",
        "partitions.json",
        "model_final.pt",
        "label_mix.png",
        "plots/accuracy.png",
        "plots/client_spread.png",
    ):
        assert (run / name).is_file(), f"{name} missing from {run}"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [1, 2]
    # under simulation the server assigns the partitions (no query message per node)
    assert json.loads((run / "summary.json").read_text())["partition_map"] == "assign"
    last = rows[-1]
    assert last["global_accuracy"] > 0.5  # chance is 0.1
    assert len(last["client_accuracies"]) == 3
    for key in ("client_acc_mean", "client_acc_std", "client_acc_worst10", "client_acc_best10"):
        assert 0.0 <= last[key] <= 1.0
    with open(run / "metrics.csv") as f:
        header = next(csv.reader(f))
    assert {"round", "global_accuracy", "client_acc_std", "client_acc_worst10"} <= set(header)


@pytest.mark.slow(seconds=35)
def test_wrong_node_count_fails_with_the_fix(tmp_path):
    with pytest.raises(AssertionError, match="num-supernodes=2"):
        flwr_run(
            tmp_path,
            "rounds=1 partition.num_partitions=2 data.train_subset=500",
            num_supernodes=3,
            timeout=240,
        )


@pytest.mark.slow(seconds=50)
def test_zda_simulation_inverts_on_both_sides(tmp_path):
    run = flwr_run(
        tmp_path,
        "rounds=2 algorithm=zda partition.num_partitions=3 partition.alpha=0.5 "
        "data.train_subset=1500 data.test_subset=500 partition.client_test_size=200 "
        "zdac.start_round=1 zdac.budget=0.1 zdac.inversion.steps=20 zdac.inversion.warm_steps=5 "
        "zdas.samples_per_client=20 zdas.share_label_counts=true zdas.inversion.steps=20 "
        "zdas.inversion.warm_steps=5 name=e2e-zda output.leakage=true zdas.guard=true",
        num_supernodes=3,
    )
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [1, 2]
    # the guard: round 2's clients scored the global model and round 1's plain average
    assert "train_zdas_guard_global_loss" not in rows[0] and rows[0]["train_zdas_trust"] == 1.0
    guard = rows[1]["train_zdas_guard_global_loss"], rows[1]["train_zdas_guard_plain_loss"]
    assert min(guard) >= 0 and guard[0] != guard[1]  # two different models scored
    delta = rows[1]["train_zdas_guard_delta"]  # the median client's; the trust follows it
    assert delta != 0 and rows[1]["train_zdas_trust"] == (1.0 if delta < 0 else 0.5)
    for r in rows:
        assert r["train_zdas_samples"] == 60  # 3 client models x 20 samples
        assert r["train_syn_count"] > 0  # every client augmented its data
        assert 0.0 <= r["train_inv_teacher_acc"] <= 1.0
        assert r["train_refused"] == 0
    assert rows[1]["train_zdas_warm_fraction"] == 1.0  # round 2 refines round 1's pool
    assert rows[1]["train_inv_warm_fraction"] > 0.0  # and so do the clients
    assert rows[-1]["global_accuracy"] > 0.25  # chance is 0.1
    images = sorted(p.name for p in (run / "images").iterdir())
    assert "round001_server.png" in images and "round002_server.png" in images
    assert any(name.startswith("round002_client0") for name in images)
    leak = [json.loads(line) for line in (run / "leakage.jsonl").read_text().splitlines()]
    assert [r["round"] for r in leak] == [1, 2] and sorted(leak[0]["clients"]) == ["0", "1", "2"]
    for key in ("synthetic_ssim_mean", "baseline_ssim_mean", "synthetic_cosine_mean"):
        assert -1.0 <= leak[1]["mean"][key] <= 1.0
    assert "round002_leakage.png" in images


@pytest.mark.slow(seconds=45)
def test_a_failed_run_exits_non_zero(tmp_path):
    """`flwr run --stream` exits 0 whatever the run did; the wrappers read the run's status."""
    proc = simulate("rounds=1 data.path=/nonexistent/fmnist", 2, tmp_path / "home", timeout=240)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "the run ended as finished:failed" in proc.stderr
    assert "/nonexistent/fmnist" in proc.stdout + proc.stderr  # the cause is in the log


def test_bad_configuration_stops_the_command_before_flower(tmp_path):
    proc = subprocess.run(
        ["bash", "scripts/run.sh", "rounds=0", "train.lr=nan", "bogus=1"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "NUM_SUPERNODES": "2"},
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "invalid configuration:",
        "  - bogus: unknown key (known: " + proc.stderr.split("known: ", 1)[1].split("\n")[0],
        "  - train.lr: must be a finite number, got nan",
        "  - rounds: must be >= 1, got 0",
    ]
    assert "Traceback" not in proc.stdout + proc.stderr


SECURE = (
    "rounds=2 partition.num_partitions=3 partition.alpha=0.5 data.train_subset=1500 "
    "data.test_subset=500 partition.client_test_size=200 name=e2e-secure"
)


@pytest.mark.slow(seconds=55)
def test_secure_aggregation_gives_the_plain_average(tmp_path, monkeypatch):
    """ZDAC under SecAgg+ ends where plain ZDAC does (same clients, seeds and client pools;
    the plain run through the core round loop, which the golden test holds equal to
    Flower's; reproducible mode), up to the quantisation of the masked sums: the server
    never sees one client's model."""
    monkeypatch.setenv("FEDZDA_REPRODUCIBLE", "1")  # the same kernels in every process
    zdac = f"{SECURE} algorithm=zdac zdac.start_round=1 zdac.inversion.steps=10"
    accuracy, _ = core_numbers(zdac, 3, save=tmp_path / "plain.pt")
    secure = flwr_run(tmp_path / "secure", f"{zdac} server.secure_aggregation=true", 3)
    rows = [json.loads(x) for x in (secure / "metrics.jsonl").read_text().splitlines()]
    # Round 1 is the same average up to the rounding of the masked sums (the same global
    # accuracy when measured); round 2 trains on top of it, which spreads that to about 1e-3.
    assert abs(rows[0]["global_accuracy"] - accuracy[0]) <= 0.002
    a, b = torch.load(tmp_path / "plain.pt"), torch.load(secure / "model_final.pt")
    for key in a:
        if a[key].is_floating_point():
            assert torch.allclose(a[key], b[key].to(a[key].dtype), atol=0.02), key
    assert [r["round"] for r in rows] == [1, 2] and rows[-1]["train_replies"] == 3
    assert rows[-1]["client_acc_std"] >= 0  # federated evaluation still runs
    assert "Secure aggregation completed" in (tmp_path / "secure" / "flwr.log").read_text()


def test_secure_aggregation_refuses_algorithms_that_need_client_models():
    with pytest.raises(ConfigError, match="'zda' needs each client's model"):
        load_config(overrides="algorithm=zda server.secure_aggregation=true")
    with pytest.raises(ConfigError, match="zdac.bank: 'shared'"):
        load_config(overrides="algorithm=zdac zdac.bank=shared server.secure_aggregation=true")
