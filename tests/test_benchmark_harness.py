"""The benchmark harness in --quick mode: cells saved at once, skipped on restart, report."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.fmnist10 import targets as fmnist10_targets
from benchmarks.fmnist100 import targets as fmnist100_targets
from benchmarks.report import ROW_KEYS, rounds_to_reach, targets

ROOT = Path(__file__).resolve().parent.parent


def test_rounds_to_reach():
    assert rounds_to_reach([0.1, 0.5, 0.7], 0.5) == 2
    assert rounds_to_reach([0.1, 0.2], 0.5) is None


def test_targets_say_met_or_by_how_much_missed():
    def row(alg, part, acc, std, worst, mean):
        return dict(algorithm=alg, partition=part, final_accuracy=acc, client_acc_std=std,
                    client_acc_worst10=worst, client_acc_mean=mean)  # fmt: skip

    rows = [
        row("fedavg", "dir0.1", 0.87, 0.10, 0.70, 0.86),
        row("zda", "dir0.1", 0.91, 0.04, 0.80, 0.90),
        row("zda", "c1", 0.70, 0.20, 0.30, 0.70),
    ]
    text = "\n".join(targets(fmnist10_targets(rows, {"inversion_to_train_ratio": 0.9})))
    assert "| zda α=0.1 final accuracy ≥ 0.905 | 0.910 (needs ≥ 0.905) | met |" in text
    assert "| zda #C=1 final accuracy ≥ 0.75 | 0.700 (needs ≥ 0.750) | missed by 0.050 |" in text
    assert "client std ≤ 0.5 × FedAvg's | 0.040 (needs ≤ 0.050) | met |" in text
    assert "worst-10% ≥ FedAvg's client mean | 0.800 (needs ≥ 0.860) | missed by 0.060 |" in text
    assert "| zda α=0.5 final accuracy ≥ 0.91 | – | not run yet |" in text
    assert "| inversion_to_train_ratio ≥ 0.85 | 0.900 (needs ≥ 0.850) | met |" in text

    for r in rows:
        r["seed"], r["seconds_per_round"] = 0, 10.0 if r["algorithm"] == "fedavg" else 16.0
    text = "\n".join(targets(fmnist100_targets(rows, None)))
    assert (
        "α=0.1 final accuracy ≥ FedAvg's + 0.05 | 0.910 (needs ≥ 0.920) | missed by 0.010" in text
    )
    assert "α=0.1 worst-10% ≥ FedAvg's + 0.10 | 0.800 (needs ≥ 0.800) | met" in text
    assert "α=0.1 client std ≤ 0.6 × FedAvg's | 0.040 (needs ≤ 0.060) | met" in text
    assert "#C=2 final accuracy ≥ FedAvg's + 0.05 | – | not run yet" in text
    assert (
        "round_ratio ≤ 1.5 (cold rounds included) | 1.600 (needs ≤ 1.500) | missed by 0.100" in text
    )


@pytest.mark.slow
@pytest.mark.e2e
def test_quick_matrix_runs_resumes_and_reports(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.fmnist10",
        "--quick",
        "--results",
        str(tmp_path),
        "--algorithms",
        "fedavg,zdas,centralized",
        "--partitions",
        "c1",
    ]
    first = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=500)
    assert first.returncode == 0, first.stdout + first.stderr
    assert sorted(p.name for p in (tmp_path / "cells").iterdir()) == [
        "centralized-all-s0.json",
        "fedavg-c1-s0.json",
        "zdas-c1-s0.json",
    ]
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.stdout.count("skip ") == 3 and "run " not in again.stdout
    report = json.loads((tmp_path / "fmnist10.json").read_text())
    assert report["yardstick"]["clients"] == 10
    assert report["yardstick"]["rounds"] == 2 and len(report["rows"]) == 3
    for row in report["rows"]:
        assert tuple(row) == ROW_KEYS
        assert 0 <= row["final_accuracy"] <= 1 and len(row["accuracy_per_round"]) == 2
    fedavg = next(r for r in report["rows"] if r["algorithm"] == "fedavg")
    assert fedavg["rounds_to_fedavg_final"] is not None
    md = (tmp_path / "fmnist10.md").read_text()
    assert "| c1 | zdas |" in md and "Not run yet" in md
    assert (tmp_path / "fmnist10_accuracy.png").is_file()


def test_adopt_saves_only_full_cells_of_the_current_pick(tmp_path, monkeypatch):
    import benchmarks.paired_core as core
    from benchmarks.paired import ROUNDS, is_current, setting

    monkeypatch.setattr(core, "OUT", tmp_path)
    pick = setting("fedlc")
    row = {"algorithm": "fedlc", "partition": "c2", "seed": 1, "rounds": ROUNDS, "setting": pick}
    row["data"] = "fashion-mnist"
    rows = [
        row | {"cell": "fedlc-c2-s1"},
        row | {"cell": "fedlc-c2-s2", "seed": 2, "setting": "fedlc.tau=0.5"},  # an old pick
        row | {"cell": "fedlc-dir0.1-s1", "partition": "dir0.1", "rounds": 2},  # too short
        row | {"cell": "fedlc-dir0.1-s2", "partition": "dir0.1", "extra": "train.lr=0.1"},
        row | {"cell": "fedlc-c2-s0", "seed": 0, "error": "RuntimeError: x"},
        row | {"cell": "fedlc-dir0.1-s0", "partition": "dir0.1", "seed": 0, "data": "gpu/fmnist"},
        row | {"cell": "fedlc-c2-s0", "seed": 0, "data": "gpu/full"},  # the full npz pair
    ]
    jsonl = tmp_path / "cells.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert core.adopt(jsonl) == ["fedlc-c2-s1", "fedlc-c2-s0"]
    assert core.adopt(jsonl) == []  # already there
    assert json.loads((tmp_path / "fedlc-c2-s1.json").read_text())["seed"] == 1
    assert json.loads((tmp_path / "fedlc-c2-s0.json").read_text())["data"] == "gpu/full"
    # the same configuration spelt otherwise is current; another value, or a key that no
    # longer exists, is not
    assert is_current(row | {"setting": f"{pick} train.lr=0.01"})  # 0.01 is the default
    assert not is_current(row | {"setting": "fedlc.tau=0.5"})
    assert not is_current(row | {"setting": f"{pick} no.such_key=1"})
    # a composition's fixed settings are part of its pick
    scaffold = row | {"algorithm": "zdas+scaffold", "setting": setting("zdas+scaffold")}
    assert is_current(scaffold)
    assert not is_current(scaffold | {"setting": "train.lr=0.1"})


def test_a_cell_set_runs_missing_cells_once_and_only_in_reproducible_mode(tmp_path, monkeypatch):
    import sys

    from benchmarks import cellset

    ran = []

    def run(method, seed):
        ran.append((method, seed))
        return {"algorithm": method, "seed": seed}

    def go(*argv):
        monkeypatch.setattr(sys, "argv", ["x", *argv])
        return cellset.main("doc", [("a", 0), ("b", 1)], lambda m, s: f"{m}-s{s}", run,
                            tmp_path / "cells", lambda rows: f"{len(rows)} rows\n",
                            tmp_path / "report.md")  # fmt: skip

    monkeypatch.delenv("FEDZDA_REPRODUCIBLE", raising=False)
    assert go() == 2 and not ran  # refused: these numbers must reproduce elsewhere
    monkeypatch.setenv("FEDZDA_REPRODUCIBLE", "1")
    assert go("--cell", "b-s1") == 0 and ran == [("b", 1)]
    assert go() == 0 and ran == [("b", 1), ("a", 0)]  # b is skipped: saved already
    assert (tmp_path / "report.md").read_text() == "2 rows\n"
