"""Faults (bad updates, a SuperNode killed mid-round) and checkpoint/exact resume."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest
import torch

from fedcore.config import load_config
from fedcore.sampling import TRAIN, Sampling, sample_partitions
from scripts.deploy import Deployment, run
from server_app.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from tests.conftest import core_numbers, flwr_run

TINY = (
    "partition.num_partitions=3 partition.alpha=1.0 data.train_subset=900 "
    "data.test_subset=300 partition.client_test_size=100"
)


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow(seconds=70)
@pytest.mark.e2e
def test_bad_updates_are_refused_and_never_averaged(tmp_path):
    kinds = "nan,inf,shape,dtype,missing_key,extra_key,num_examples"
    run_dir = flwr_run(
        tmp_path,
        f"rounds=7 {TINY} server.min_train_nodes=2 faults.bad_update_partition=1 "
        f"faults.bad_update_kinds={kinds} name=faults",
        num_supernodes=3,
    )
    rows = _rows(run_dir)
    assert [r["train_refused"] for r in rows] == [1] * 7
    assert [r["train_replies"] for r in rows] == [2] * 7
    state = torch.load(run_dir / "model_final.pt")
    assert all(torch.isfinite(v.float()).all() for v in state.values())
    log = (tmp_path / "flwr.log").read_text()
    refused = [line for line in log.splitlines() if "refused train reply from node" in line]
    assert len(refused) == 7
    for needle in ("NaN or Inf", "shape", "dtype", "missing", "extra", "absurd num-examples"):
        assert any(needle in line for line in refused), needle


@pytest.mark.slow(seconds=180)
@pytest.mark.e2e
def test_killed_supernode_round_finishes_with_remaining_replies(tmp_path):
    dep = Deployment(
        num_supernodes=3,
        workdir=tmp_path,
        port=0,
        supernode_port=0,
        timeout=500,
        run_config=f"rounds=2 {TINY} server.min_train_nodes=2 name=kill faults.hang_partition=2",
    )
    result: dict = {}

    def deploy() -> None:
        try:
            result["run"] = run(dep)
        except Exception as e:  # reported by the assertion below
            result["error"] = e

    t = threading.Thread(target=deploy)
    t.start()
    log = tmp_path / "logs" / "supernode-2.log"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # kill SuperNode 2 while it provably has not replied
        if log.is_file() and "partition 2 hangs in round 1" in log.read_text():
            break
        time.sleep(0.5)
    else:
        pytest.fail("SuperNode 2 never received a train message")
    os.killpg(dep.procs[3].pid, signal.SIGKILL)
    t.join(timeout=600)
    assert "error" not in result, result.get("error")
    rows = _rows(result["run"])
    assert [r["round"] for r in rows] == [1, 2]
    assert rows[0]["train_replies"] == 2 and rows[1]["train_replies"] == 2
    flwr_log = (tmp_path / "logs" / "flwr-run.log").read_text()
    assert re.search(r"refused train reply from node \d+: client error", flwr_log)


@pytest.mark.slow(seconds=95)
@pytest.mark.e2e
def test_resumed_run_equals_uninterrupted_run_and_samples_the_same(tmp_path, monkeypatch):
    """ZDAS on 10 clients, 3 sampled per round: a run stopped after round 2 and resumed ends
    with the uninterrupted run's model and accuracies (the core round loop's, which the
    golden test holds equal to Flower's; reproducible mode), and trains and evaluates the
    seeded samples of clients (federated evaluation every 2nd round on 5, all 10 last)."""
    monkeypatch.setenv("FEDZDA_REPRODUCIBLE", "1")  # the same kernels in every process
    base = (
        "rounds=3 partition.alpha=1.0 data.train_subset=2000 data.test_subset=500 "
        "partition.client_test_size=50 server.fraction_train=0.3 server.fraction_evaluate=0.5 "
        "server.evaluate_every=2 seed=4 algorithm=zdas zdas.samples_per_client=10 "
        "zdas.inversion.steps=5 zdas.inversion.warm_steps=2 name=resume"
    )
    accuracy, _ = core_numbers(base, 10, save=tmp_path / "uninterrupted.pt")
    cut = flwr_run(
        tmp_path / "b",
        base + " faults.stop_after_round=2",
        num_supernodes=10,
        expect="stopped after round 2",
    )
    assert not (cut / "model_final.pt").exists()
    resumed = flwr_run(tmp_path / "c", base, num_supernodes=10, resume=cut)
    assert resumed == cut
    a = torch.load(tmp_path / "uninterrupted.pt")
    b = torch.load(resumed / "model_final.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = _rows(resumed)
    assert [r["global_accuracy"] for r in rows] == accuracy
    expected = [sample_partitions(range(10), Sampling(0.3), 4, r, TRAIN) for r in (1, 2, 3)]
    assert [r["train_partitions"] for r in rows] == expected
    assert [r["train_replies"] for r in rows] == [3, 3, 3]
    assert [len(r["eval_partitions"]) for r in rows] == [0, 5, 10]
    assert "client_acc_mean" not in rows[0]
    assert sum(a is not None for a in rows[1]["client_accuracies"]) == 5
    assert all(a is not None for a in rows[2]["client_accuracies"])


def test_corrupt_missing_or_mismatched_checkpoint_is_a_clear_error(tmp_path):
    cfg = load_config(None, "rounds=3")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path, cfg.to_dict())
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(tmp_path, cfg.to_dict())
    save_checkpoint(tmp_path, round=1, state={}, strategy={}, rows=[], config=cfg.to_dict())
    other = load_config(None, "rounds=5 train.lr=0.05 resume=x")
    with pytest.raises(CheckpointError, match=r"train\.lr: checkpoint 0\.01 vs now 0\.05"):
        load_checkpoint(tmp_path, other.to_dict())
    assert load_checkpoint(tmp_path, load_config(None, "rounds=9").to_dict())["round"] == 1


def test_a_checkpoint_from_before_an_added_key_resumes_with_it_off(tmp_path):
    """A key added since (``ADDED_OFF``): its absence reads as its off value."""
    old = load_config(None, "algorithm=zdas").to_dict()
    del old["zdas"]["guard"]  # as saved before zdas.guard existed
    save_checkpoint(tmp_path, round=1, state={}, strategy={}, rows=[], config=old)
    assert load_checkpoint(tmp_path, load_config(None, "algorithm=zdas").to_dict())["round"] == 1
    on = load_config(None, "algorithm=zdas zdas.guard=true").to_dict()
    with pytest.raises(CheckpointError, match=r"zdas\.guard: checkpoint None vs now True"):
        load_checkpoint(tmp_path, on)
