"""End to end through Flower's simulation engine, exactly as `flwr run .` runs it."""

import csv
import json

import pytest

from tests.conftest import flwr_run

pytestmark = pytest.mark.e2e


def test_fedavg_simulation_writes_a_complete_run_directory(tmp_path):
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
    last = rows[-1]
    assert last["global_accuracy"] > 0.5  # chance is 0.1
    assert len(last["client_accuracies"]) == 3
    for key in ("client_acc_mean", "client_acc_std", "client_acc_worst10", "client_acc_best10"):
        assert 0.0 <= last[key] <= 1.0
    with open(run / "metrics.csv") as f:
        header = next(csv.reader(f))
    assert {"round", "global_accuracy", "client_acc_std", "client_acc_worst10"} <= set(header)


def test_wrong_node_count_fails_with_the_fix(tmp_path):
    with pytest.raises(AssertionError, match="num-supernodes=2"):
        flwr_run(
            tmp_path,
            "rounds=1 partition.num_partitions=2 data.train_subset=500",
            num_supernodes=3,
            timeout=240,
        )
