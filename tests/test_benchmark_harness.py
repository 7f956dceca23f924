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


@pytest.mark.slow(seconds=55)
@pytest.mark.e2e
def test_quick_matrix_runs_resumes_and_reports(tmp_path):
    cells = "fedavg-c1-s0,centralized-all-s0"  # the Flower and the centralized runner
    cmd = [sys.executable, "-m", "benchmarks.fmnist10", "--quick", "--results", str(tmp_path),
           "--cell", cells]  # fmt: skip
    first = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=500)
    assert first.returncode == 0, first.stdout + first.stderr
    assert sorted(p.name for p in (tmp_path / "cells").iterdir()) == [
        "centralized-all-s0.json",
        "fedavg-c1-s0.json",
    ]
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.stdout.count("skip ") == 2 and "run " not in again.stdout
    report = json.loads((tmp_path / "fmnist10.json").read_text())
    assert report["yardstick"]["clients"] == 10
    assert report["yardstick"]["rounds"] == 2 and len(report["rows"]) == 2
    for row in report["rows"]:
        assert tuple(row) == ROW_KEYS
        assert 0 <= row["final_accuracy"] <= 1 and len(row["accuracy_per_round"]) == 2
    fedavg = next(r for r in report["rows"] if r["algorithm"] == "fedavg")
    assert fedavg["rounds_to_fedavg_final"] is not None
    md = (tmp_path / "fmnist10.md").read_text()
    assert "| c1 | fedavg |" in md and "Not run yet" in md
    assert (tmp_path / "fmnist10_accuracy.png").is_file()


def _fake_set(tmp_path, ran: list):
    from benchmarks.harness import Cell, CellSet

    def runner(cell, work):
        ran.append(cell.row["name"])
        return {"final_accuracy": 0.5}

    def report(rows, results, public):
        (results / "report.md").write_text(f"{len(rows)} rows\n")

    cells = {n: Cell(f"seed={s}", 4, {"name": n}, runner) for n, s in (("a", 0), ("b", 1))}
    return CellSet("fake", cells, report, reproducible=True)


def test_a_cell_set_runs_missing_cells_once_and_only_in_reproducible_mode(tmp_path, monkeypatch):
    from benchmarks.harness import main

    ran: list = []
    cs = _fake_set(tmp_path, ran)

    def go(*argv):
        return main(cs, "doc", [*argv, "--results", str(tmp_path)])

    monkeypatch.delenv("FEDZDA_REPRODUCIBLE", raising=False)
    assert go() == 2 and not ran  # refused: these numbers must reproduce elsewhere
    monkeypatch.setenv("FEDZDA_REPRODUCIBLE", "1")
    assert go("--cell", "b") == 0 and ran == ["b"]
    assert go() == 0 and ran == ["b", "a"]  # b is skipped: saved and current
    assert (tmp_path / "report.md").read_text() == "2 rows\n"


def test_staleness_is_the_run_config_and_the_golden_numbers(tmp_path, monkeypatch):
    import benchmarks.harness as h

    golden = tmp_path / "demo.json"
    numbers = {"rounds": [0.1], "client_accuracies": [0.2]}
    golden.write_text(json.dumps({"methods": {"fedavg": numbers}}))
    monkeypatch.setattr(h, "GOLDEN", golden)
    monkeypatch.setattr(h, "LEGACY_GOLDEN", h.digest(h.golden_numbers()))
    cell = h.Cell("algorithm=fedlc fedlc.tau=16 seed=3", 100)
    row = {"stamp": h.stamp(cell)}
    assert h.status(cell, row) == "current" and h.status(cell, None) == "missing"
    # another value, the same value spelt otherwise, a key that no longer parses
    assert h.status(h.Cell("algorithm=fedlc fedlc.tau=8 seed=3", 100), row) == "stale"
    assert h.status(h.Cell("seed=3 fedlc.tau=16.0 algorithm=fedlc", 100), row) == "current"
    assert h.status(cell, {"command": "algorithm=fedlc fedlc.tau=16 seed=3 train.lr=0.01"}) == (
        "current"  # before stamps: judged by the run config it recorded (lr 0.01: default)
    )
    assert h.status(cell, {"command": "algorithm=fedlc no.such_key=1"}) == "stale"
    assert h.status(h.Cell(f"{cell.keys} fedprox.mu=0.5", 100), row) == "current"  # unused
    assert h.status(cell, {"final_accuracy": 0.8}) == "legacy"  # nothing recorded
    golden.write_text(json.dumps({"methods": {"fedavg": numbers | {"rounds": [0.3]}}}))
    assert h.status(cell, row) == "stale"  # the numbers moved: every cell reruns
    assert h.status(cell, {"final_accuracy": 0.8}) == "stale"  # those before stamps too


def test_adopt_saves_only_full_cells_of_the_current_config(tmp_path):
    from benchmarks.harness import CellSet, stamp
    from benchmarks.paired import cellset
    from benchmarks.pool import adopt

    real = cellset()
    cs = CellSet("paired", real.cells, real.report)
    (tmp_path / "paired").mkdir()
    good = {"stamp": stamp(real.cells["fedlc-c2-s1"]), "data": "fashion-mnist", "extra": ""}
    rows = [
        good | {"cell": "fedlc-c2-s1"},
        good | {"cell": "fedlc-c2-s2"},  # another cell's stamp: another run config
        good | {"cell": "fedlc-c2-s1", "extra": "train.lr=0.1"},  # a lever trial
        good | {"cell": "fedlc-c2-s1", "error": "RuntimeError: x"},
        good | {"cell": "fedlc-c2-s1", "data": "gpu/fmnist"},  # a subset
        good | {"cell": "no-such-cell"},
    ]
    jsonl = tmp_path / "cells.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert adopt(cs, jsonl, tmp_path) == ["fedlc-c2-s1"]
    assert adopt(cs, jsonl, tmp_path) == []  # already there
    assert (
        json.loads((tmp_path / "paired" / "fedlc-c2-s1.json").read_text())["cell"] == "fedlc-c2-s1"
    )


SETS = ("fmnist10", "fmnist100", "tuning", "paired", "heldout", "shapes", "extreme", "robustness")


@pytest.mark.parametrize("name", SETS)
def test_every_cell_of_every_set_is_a_valid_run_config(name):
    import importlib

    from benchmarks.harness import stamp

    cs = importlib.import_module(f"benchmarks.{name}").cellset()
    assert cs.cells, f"{name} has no cells"
    for cell in cs.cells.values():
        assert len(stamp(cell)) == 16  # resolves and validates the cell's run config


def test_a_key_added_switched_off_leaves_stamps_alone():
    """``ADDED_OFF``: a key added after stamps, at its off value, is not part of the stamp
    (the cells ran exactly so before it existed); switched on, it is."""
    from benchmarks.harness import Cell, config_of, stamp, used
    from fedcore.experiment import ADDED_OFF

    zdas = "algorithm=zdas+scaffold seed=1"
    assert "guard" not in used(config_of(zdas, 100))["zdas"] and ADDED_OFF["zdas.guard"] is False
    assert "finetune_lr" in used(config_of(zdas, 100))["zdas"]  # every other key stays
    on = Cell(f"{zdas} zdas.guard=true", 100)
    assert stamp(Cell(zdas, 100)) == stamp(Cell(f"{zdas} zdas.guard=false", 100)) != stamp(on)


def test_defaults_rule_keeps_the_value_with_the_smaller_largest_regret():
    """extreme.defaults: tau 1 loses 1 point here and 2 in tuning, tau 16 loses 3 here: tau 1
    (largest regret 2) is kept; a knob with a missing seed waits."""
    from benchmarks.extreme import defaults

    def row(label: str, seed: int, acc: float) -> dict:
        return {"algorithm": label, "partition": "c2", "seed": seed, "accuracy_per_round": [acc]}

    rows = (
        [row("fedlc@1", s, 0.80) for s in (0, 1, 2)]
        + [row("fedlc", s, 0.77) for s in (0, 1, 2)]
        + [row("fedprox@0.01", 0, 0.5)]
    )
    tuned = {"fedlc-fedlc.tau=1": {"accuracy_per_round": [0.85]},
             "fedlc-fedlc.tau=16": {"accuracy_per_round": [0.87]}}  # fmt: skip
    lines = defaults(rows, tuned)
    tau = [line for line in lines if line.startswith("| fedlc.tau")]
    assert "1 (default: **kept**)" in tau[0] and "largest 2.00" in tau[0]
    assert "16 (pick)" in tau[1] and "largest 3.00" in tau[1]
    assert "| fedprox.mu | | waiting for cells | | | |" in lines
