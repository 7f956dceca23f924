"""Shared test helpers: tiny datasets on disk, a `flwr run` driver and the `--slow` tier."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # One thread per pytest-xdist worker: with torch's default (one per core) two workers'
    # OpenMP threads spin against each other and a CPU-bound test runs 9x slower. The Flower
    # processes an end-to-end test spawns inherit the variables.
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)

from scripts.simulate import simulate

ROOT = Path(__file__).resolve().parent.parent
FMNIST = Path("/usr/share/datasets/fashion-mnist")

SLOW_REASON = "slow tier (an end-to-end run or long training): add --slow to run it"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--slow",
        action="store_true",
        default=False,
        help="also run the slow tier: the tests marked `slow` (every end-to-end run but the "
        "one smoke test, long training); with -m slow, only them",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Two tiers: without --slow the tests marked ``slow`` are skipped, naming the flag; with
    it, the slow tests are ordered for the workers (:func:`_balance`)."""
    if config.getoption("--slow"):
        items[:] = _balance(items, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
        return
    skip = pytest.mark.skip(reason=SLOW_REASON)
    for item in items:
        if item.get_closest_marker("slow") is not None:
            item.add_marker(skip)


def _seconds(item: pytest.Item) -> float:
    mark = item.get_closest_marker("slow")
    return float(mark.kwargs.get("seconds", 0)) if mark is not None else 0.0


def _balance(items: list[pytest.Item], workers: int) -> list[pytest.Item]:
    """The items as ``workers`` contiguous shares of the sizes pytest-xdist's worksteal
    splits the list into, each share longest first: ranks by ``slow(seconds=...)`` dealt in
    snake order (0 1 1 0 0 1 ..., skipping full shares), so the shares take about equal time
    and the short tests come last, where an idle worker steals them. Ties keep collection
    order."""
    if workers < 2:
        return items
    sizes, left = [], len(items)
    for i in range(workers):  # worksteal: each idle node takes len(pending) // nodes_left
        sizes.append(left // (workers - i))
        left -= sizes[-1]
    snake = [*range(workers), *reversed(range(workers))]
    shares: list[list[pytest.Item]] = [[] for _ in range(workers)]
    turn = 0
    for item in sorted(items, key=_seconds, reverse=True):  # stable
        while len(shares[snake[turn % len(snake)]]) == sizes[snake[turn % len(snake)]]:
            turn += 1
        shares[snake[turn % len(snake)]].append(item)
        turn += 1
    return [item for share in shares for item in share]


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> Path:
    """Write a uint8 array as an IDX file (optionally gzipped)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    raw = header + array.astype(np.uint8).tobytes()
    path = path.with_name(path.name + ".gz") if gz else path
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


@pytest.fixture
def idx_dir(tmp_path: Path) -> Path:
    """An MNIST-format directory with 200 train / 50 test random 8x8 images, 4 classes."""
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 200), ("t10k", 50)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 8, 8)))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 4, gz=False)
    return tmp_path


def core_numbers(keys: str, clients: int, save: Path | None = None) -> tuple[list, list]:
    """Per-round global accuracy and the final client accuracies of ``keys`` through the
    core round loop, in a fresh process in reproducible mode (``save``: the final model):
    Flower's numbers of the same run config, which the golden test holds exactly."""
    target = f"pathlib.Path({str(save)!r})" if save else "None"
    code = ("import json, pathlib; from benchmarks.harness import core_run; "
            f"r = core_run({keys!r}, {clients}, save={target}); "
            "print(json.dumps([r['accuracy_per_round'], r['client_accuracies']]))")  # fmt: skip
    env = dict(os.environ, FEDZDA_REPRODUCIBLE="1")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, check=True)  # fmt: skip
    accuracy, clients_acc = json.loads(out.stdout.strip().splitlines()[-1])
    return accuracy, clients_acc


def flwr_run(
    tmp_path: Path,
    overrides: str,
    num_supernodes: int,
    timeout: int = 540,
    expect: str = "outputs in",
    resume: Path | None = None,
) -> Path:
    """Run this app with `flwr run .` on an isolated local SuperLink; return the run directory
    (``tmp_path/run``, chosen here through ``output.dir``; or ``resume``, continued).

    The combined output is kept in ``tmp_path/flwr.log``; ``expect`` must appear in it.
    """
    tmp_path.mkdir(parents=True, exist_ok=True)
    run_dir = resume or tmp_path / "run"
    where = f"resume={run_dir}" if resume else f"output.dir={run_dir}"
    proc = simulate(f"{overrides} {where}", num_supernodes, tmp_path / "flwr-home", timeout)
    out = proc.stdout + proc.stderr
    (tmp_path / "flwr.log").write_text(out)
    said = (
        f"resuming {run_dir.resolve()} at round" if resume else f"run directory {run_dir.resolve()}"
    )
    ok = proc.returncode == 0 and expect in out and said in out
    assert ok, f"flwr run failed ({proc.returncode}):\n{out[-6000:]}"
    return run_dir
