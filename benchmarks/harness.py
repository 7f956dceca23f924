"""The one benchmark harness: a cell set is a table of cells (name -> run config) and a
report; :func:`run_cell` runs any cell through its runner (Flower or the core round loop);
:func:`main` is every set's command line.

A finished cell is saved at once as ``results/<set>/<name>.json`` and skipped on the next
start while it is current: its ``stamp`` (a hash of the resolved run config and of the
golden numbers, ``tests/golden/demo.json``) equals the cell's stamp today. A cell saved
before stamps existed is current when the run config it recorded resolves to today's, and
kept as ``legacy`` when it recorded none. A stale cell is rerun and left out of the report.

    python -m benchmarks.SET [--cell NAME,PATTERN*] [--list] [--report] [--quick]
    python -m benchmarks.harness NAME "key=value ..." [--clients 10] [--flower]   # a trial
"""

from __future__ import annotations

import argparse
import fnmatch
import functools
import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fedcore import reproducible
from fedcore.algorithms import SECTIONS, resolve
from fedcore.config import ConfigError, ExperimentConfig, load_config
from fedcore.experiment import ADDED_OFF
from fedcore.federation import build_federation
from fedcore.metrics import fairness_summary
from fedcore.provenance import platform_info
from fedcore.round import run_rounds
from fedcore.rundir import recorded_platform
from fedcore.training import evaluate
from scripts.simulate import simulate

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
GOLDEN = ROOT / "tests" / "golden" / "demo.json"
FULL = ("fashion-mnist", "full")  # the built-in training set, or all of it as an npz pair
# The golden numbers when stamps were introduced (8c216eb): cells saved before then carry
# no stamp and are accepted only while the code still gives these numbers.
LEGACY_GOLDEN = "2e064316ea81adfe"
# Round metrics a core-loop cell keeps per round where the run reports them (ZDAS's guard)
TRACED = ("zdas-trust", "zdas-guard-delta")
Runner = Callable[["Cell", Path], dict]
CURRENT = ("current", "legacy")  # the states of a saved cell that is kept (not rerun)


@dataclass(frozen=True)
class Cell:
    """One run: its run-config overrides on ``clients`` clients, the fields that name it in
    its result (``row``), and the runner that makes the result."""

    keys: str
    clients: int
    row: dict = field(default_factory=dict)
    runner: Runner | None = None  # default: the core round loop (core_run)
    experiment: Path | None = None
    extra: str = ""  # what else the result depends on (a runner's own settings): stamped


@dataclass(frozen=True)
class CellSet:
    """A table of cells and the report built from their results (rows in table order, the
    results directory, whether the committed README/docs follow)."""

    name: str
    cells: dict[str, Cell]
    report: Callable[[list[dict], Path, bool], None]
    cell_dir: str = ""  # default: name
    reproducible: bool = False  # cells refuse to run outside reproducible mode
    quick: Callable[[], CellSet] | None = None  # a tiny variant: the harness's smoke test

    @property
    def folder(self) -> str:
        """Where its cells are saved, under the results directory."""
        return self.cell_dir or self.name


def config_of(keys: str, clients: int, experiment: Path | None = None) -> ExperimentConfig:
    return load_config(experiment, keys, ROOT).with_clients(clients)


def golden_numbers() -> str:
    """The golden per-round numbers (what a change that moves numbers must rewrite)."""
    if not GOLDEN.is_file():
        return ""
    methods = json.loads(GOLDEN.read_text()).get("methods", {})
    keep = ("rounds", "client_accuracies")
    return json.dumps({m: {k: v[k] for k in keep} for m, v in methods.items()}, sort_keys=True)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def used(cfg: ExperimentConfig) -> dict:
    """The resolved run config less the sections of algorithms it does not run (a default of
    an unused method changes no cell) and less keys added since stamps at their off value."""
    own = {c.section for c in resolve(cfg.algorithm) if c.Config is not None}
    out = {k: v for k, v in cfg.to_dict().items() if k not in SECTIONS or k in own}
    for key, off in ADDED_OFF.items():  # added since stamps came in, switched off
        *path, last = key.split(".")
        inner = functools.reduce(lambda d, k: d.get(k, {}), path, out)
        if last in inner and inner[last] == off:
            del inner[last]
    return out


def stamp(cell: Cell) -> str:
    """Hash of the cell's resolved run config (the used part) and the golden numbers."""
    cfg = used(config_of(cell.keys, cell.clients, cell.experiment))
    return digest(json.dumps(cfg, sort_keys=True, default=str) + cell.extra + golden_numbers())


def status(cell: Cell, row: dict | None) -> str:
    """``missing``, ``current``, ``legacy`` (before stamps, no run config recorded) or
    ``stale`` (another run config or other golden numbers: rerun)."""
    if row is None:
        return "missing"
    if "stamp" in row:
        return "current" if row["stamp"] == stamp(cell) else "stale"
    if digest(golden_numbers()) != LEGACY_GOLDEN:
        return "stale"
    if "command" not in row:
        return "legacy"
    command = row["command"]
    if Path(row.get("data", "")).name == "full":  # all of Fashion-MNIST as an npz pair
        command = " ".join(k for k in command.split() if not k.startswith("data."))
    try:
        then = config_of(command, cell.clients, cell.experiment)
    except ConfigError:
        return "stale"
    now = config_of(cell.keys, cell.clients, cell.experiment)
    return "current" if used(then) == used(now) else "stale"


def code_version() -> dict:
    """The commit a cell ran from, and the tracked files that differed from it (if any)."""

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else ""

    return {"commit": git("rev-parse", "HEAD") or None,
            "modified": git("diff", "--name-only", "HEAD").split()}  # fmt: skip


def run_cell(cell: Cell, work: Path) -> dict:
    """One cell's result: its naming fields, command, code and stamp, then its runner's (the
    core loop's where it names none; ``work``: the runner's own directory)."""
    head = {**cell.row, "command": cell.keys, "code": code_version(), "stamp": stamp(cell)}
    if cell.runner is None:
        return head | core_run(cell.keys, cell.clients, experiment=cell.experiment)
    return head | cell.runner(cell, work)


def core_run(
    keys: str,
    clients: int,
    experiment: Path | None = None,
    threads: int = 1,
    save: Path | None = None,
) -> dict:
    """A run config through the core round loop at ``threads`` torch threads (0: torch's
    own count), on CUDA if there is one: the global model on the test set every round and,
    after the last round, on every client's own test set (as Flower's final federated
    evaluation). ``save``: where to write the final model's state dict."""
    if threads:
        torch.set_num_threads(threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = config_of(keys, clients, experiment)
    t0 = time.perf_counter()
    fed = build_federation(cfg)
    accuracy, loss, seconds, left_out = [], [], [], []
    traced: dict[str, list[float | None]] = {k: [] for k in TRACED}
    for r in run_rounds(cfg, fed, device):
        for k, values in traced.items():
            values.append(r.metrics.get(k))
        ev = evaluate(r.model, fed.test, device=device)
        accuracy.append(float(ev["accuracy"]))
        loss.append(float(ev["loss"]))
        seconds.append(r.seconds)
        left_out.append({"sampled": r.partitions, "left_out": list(r.step.left_out)})
        if r.server_round % 10 == 0:
            note = f"acc {accuracy[-1]:.4f}, {seconds[-1]:.2f} s (train + aggregate)"
            print(f"{cfg.name} s{cfg.seed} round {r.server_round}: {note}", flush=True)
    if save is not None:
        torch.save(r.model.state_dict(), save)
    clients_acc = [
        float(evaluate(r.model, fed.client_datasets(pid)[1], device=device)["accuracy"])
        for pid in range(cfg.num_clients)
    ]
    out = {
        "command": keys, "path": "core round loop (benchmarks.harness)",
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "platform": platform_info(),
        "final_accuracy": accuracy[-1], "accuracy_per_round": accuracy, "loss_per_round": loss,
        "round_seconds": seconds, "seconds_per_round": float(np.mean(seconds)),
        "wall_seconds": time.perf_counter() - t0,
        **fairness_summary(clients_acc), "client_accuracies": clients_acc,
    }  # fmt: skip
    traced = {k: v for k, v in traced.items() if any(x is not None for x in v)}
    return out | traced | _attack_record(cfg, left_out)


def _attack_record(cfg: ExperimentConfig, left_out: list[dict]) -> dict:
    """With an attack or a screen: who attacked, and each round's sample and left-out models."""
    if cfg.attack.kind == "none" and not any(r["left_out"] for r in left_out):
        return {}
    attackers = sorted(cfg.attack.attackers(cfg.num_clients, cfg.seed))
    return {"attackers": attackers, "screen_per_round": left_out}


def flower_cell(cell: Cell, work: Path) -> dict:
    """The user-path runner: `flwr run .` on a private local simulation SuperLink, its run
    directory and log in ``work``."""
    run_dir = work / "run"
    shutil.rmtree(run_dir, ignore_errors=True)  # a cell always runs whole, from round 1
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    proc = simulate(f"{cell.keys} output.dir={run_dir}", cell.clients, work / "flwr-home",
                    experiment=cell.experiment)  # fmt: skip
    (work / "flwr.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0 or not (run_dir / "summary.json").is_file():
        raise RuntimeError(f"cell failed; see {work}/flwr.log")
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    inv = [  # inversion per round: clients' ZDAC, the server's ZDAS and its ZDAC bank
        r.get("train_inv_seconds", 0.0) * r.get("train_replies", 0)
        + r.get("train_zdas_inv_seconds", 0.0)
        + r.get("train_zdac_bank_seconds", 0.0)
        for r in rows
    ]
    acc, secs = [r["global_accuracy"] for r in rows], [r["round_seconds"] for r in rows]
    last = rows[-1]
    rel = run_dir.relative_to(ROOT) if run_dir.is_relative_to(ROOT) else run_dir
    return {
        "rounds": len(rows), "final_accuracy": acc[-1], "best_accuracy": max(acc),
        **{k: last[k] for k in ("client_acc_mean", "client_acc_std", "client_acc_worst10")},
        "seconds_per_round": float(np.mean(secs)),
        "inversion_seconds_per_round": float(np.mean(inv)),
        "rounds_to_fedavg_final": None,  # filled in by the report from the FedAvg row
        "accuracy_per_round": acc, "loss_per_round": [r["global_loss"] for r in rows],
        "client_accuracies": last["client_accuracies"], "round_seconds": secs,
        "wall_seconds": time.perf_counter() - t0, "platform": recorded_platform(run_dir),
        "run_dir": str(rel),
    }  # fmt: skip


def saved(cs: CellSet, results: Path) -> dict[str, dict]:
    """The set's saved results by cell name (only cells of its table)."""
    out = results / cs.folder
    return {n: json.loads(p.read_text()) for n in cs.cells if (p := out / f"{n}.json").is_file()}


def kept(cs: CellSet, have: dict[str, dict]) -> dict[str, dict]:
    """Of ``have`` (saved results by cell name), those that are kept (current or legacy)."""
    return {n: r for n, r in have.items() if status(cs.cells[n], r) in CURRENT}


def current(cs: CellSet, results: Path) -> dict[str, dict]:
    """The set's saved results that are kept (current or legacy), by cell name."""
    return kept(cs, saved(cs, results))


def select(cs: CellSet, patterns: str) -> list[str]:
    """Cell names matching comma-separated names or shell patterns (all when empty)."""
    if not patterns:
        return list(cs.cells)
    return [n for n in cs.cells if any(fnmatch.fnmatchcase(n, p) for p in patterns.split(","))]


def run_missing(cs: CellSet, names: list[str], results: Path) -> None:
    """Run every named cell that is not current, each saved at once (resumable per cell)."""
    have = saved(cs, results)
    for n in names:
        state = status(cs.cells[n], have.get(n))
        if state in CURRENT:
            print(f"skip {n} ({state})")
            continue
        print(f"run  {n} ({state}) ...", flush=True)
        row = run_cell(cs.cells[n], results / "work" / cs.folder / n)
        (results / cs.folder / f"{n}.json").write_text(json.dumps(row, indent=2))
        print(f"done {n}: final {row['final_accuracy']:.4f}", flush=True)


def main(cs: CellSet, doc: str, argv: list[str] | None = None) -> int:
    """A cell set's command line: run the missing or stale cells, then rebuild the report."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--cell", default="", help="names or patterns, comma-separated")
    ap.add_argument("--list", action="store_true", help="print each cell's name and status")
    ap.add_argument("--report", action="store_true", help="only rebuild the report")
    ap.add_argument("--quick", action="store_true", help="harness smoke test (tiny, 2 rounds)")
    ap.add_argument("--results", type=Path, default=None, help="results directory")
    a = ap.parse_args(argv)
    if a.quick:
        if cs.quick is None:
            ap.error(f"{cs.name} has no --quick variant")
        cs = cs.quick()
    results = a.results or (RESULTS / "quick" / cs.name if a.quick else RESULTS)
    names = select(cs, a.cell)
    if a.cell and not names:
        ap.error(f"no cell matches {a.cell!r}; see --list")
    have = saved(cs, results)
    if a.list:
        print("\n".join(f"{n}  {status(cs.cells[n], have.get(n))}" for n in names))
        return 0
    (results / cs.folder).mkdir(parents=True, exist_ok=True)
    if not a.report:
        if cs.reproducible and not reproducible.enabled():
            print(f"{cs.name} cells run in reproducible mode: set {reproducible.ENV}=1",
                  file=sys.stderr)  # fmt: skip
            return 2
        run_missing(cs, names, results)
    have = saved(cs, results)  # read once: the kept results and the stale names
    keep = kept(cs, have)
    if stale := [n for n in have if n not in keep]:
        print(f"left out (stale: rerun them): {', '.join(stale)}")
    cs.report(list(keep.values()), results, not (a.quick or a.results))
    return 0


def trial(argv: list[str] | None = None) -> int:
    """A short lever trial outside every table: one run config, its accuracy per round."""
    ap = argparse.ArgumentParser(description="a lever trial (levers.md), outside every table")
    ap.add_argument("name", help="a label for the trial (its work directory)")
    ap.add_argument("overrides", help='run-config overrides, e.g. "algorithm=zdas rounds=5"')
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--flower", action="store_true", help="through `flwr run .`")
    a = ap.parse_args(argv)
    work = RESULTS / "work" / "trials" / a.name
    work.mkdir(parents=True, exist_ok=True)
    cell = Cell(f"{a.overrides} name={a.name}", a.clients, {"trial": a.name},
                flower_cell if a.flower else None)  # fmt: skip
    row = run_cell(cell, work)
    (work / "summary.json").write_text(json.dumps(row, indent=2))
    keep = ("accuracy_per_round", "client_acc_std", "client_acc_worst10", "seconds_per_round")
    print(json.dumps({"trial": a.name, **{k: row[k] for k in keep}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(trial())
