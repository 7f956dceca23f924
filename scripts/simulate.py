"""Run this app through `flwr run .` with Flower's simulation engine.

An experiment is an optional TOML file plus `dotted.key=value` overrides (overrides win);
both are merged into one run-config file, checked here first, and passed with
`--run-config`. Flower itself takes a file or inline keys, not both.

    python -m scripts.simulate [--supernodes N] [--dry-run] [configs/x.toml] [key=value ...]

The function :func:`simulate` gives the tests and benchmarks a private local SuperLink
(its own Flower home, free ports, no run-time `uv sync`), stopped with everything it
spawned when the run ends. `flwr run --stream` exits 0 whatever became of the run, so the
run's final status is read back from the SuperLink (`flwr ls`): anything but
``finished:completed`` (a crashed ServerApp, a failed round) makes the exit status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import torch

from fedcore.config import ConfigError
from fedcore.experiment import SimulationConfig
from fedcore.runconfig import run_config_file
from scripts.proctree import kill_tree

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# what --dry-run shows of the environment flwr_command sets (its PATH only adds BIN)
DRY_RUN_ENV = (
    "FLWR_HOME",
    "FLWR_LOCAL_SUPERLINK_HTTP_API_PORT",
    "FLWR_LOCAL_CONTROL_API_PORT",
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def simulate(
    overrides: str,
    num_supernodes: int,
    home: Path,
    timeout: float | None = None,
    experiment: str | Path | None = None,
    capture: bool = True,
) -> subprocess.CompletedProcess:
    """`flwr run . --run-config <merged toml>` with ``num_supernodes`` simulated SuperNodes."""
    cmd, env = flwr_command(overrides, num_supernodes, home, experiment)
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=capture, text=True,
                              timeout=timeout)  # fmt: skip
        status = run_status(env) if proc.returncode == 0 else None
    finally:
        kill_tree(f"flower-superlink.*{re.escape(str(home))}/")
    if proc.returncode == 0 and status != "finished:completed":
        ended = status or "unknown (flwr ls listed no run)"
        msg = f"fedzda: the run ended as {ended}; see the log above"
        if capture:
            proc.stderr = (proc.stderr or "") + msg + "\n"
        else:
            print(msg, file=sys.stderr)
        proc.returncode = 1
    return proc


def flwr_command(
    overrides: str, num_supernodes: int, home: Path, experiment: str | Path | None = None
) -> tuple[list[str], dict[str, str]]:
    """The `flwr run` command line and its environment (private Flower home, free ports);
    checks the experiment and writes its merged run-config file under ``home``."""
    home.mkdir(parents=True, exist_ok=True)
    run_config = home / "run-config.toml"
    text, cfg = run_config_file(experiment, overrides, ROOT)
    run_config.write_text(text)
    federation = federation_config(num_supernodes, cfg.simulation)
    cmd = [str(BIN / "flwr"), "run", ".", "--stream",
           "--federation-config", federation,
           "--run-config", str(run_config)]  # fmt: skip
    return cmd, flwr_env(home)


def federation_config(num_supernodes: int, sim: SimulationConfig) -> str:
    """``--federation-config`` of a local simulation: the nodes and each ClientApp's share."""
    return (
        f"num-supernodes={num_supernodes} client-resources-num-cpus={sim.client_cpus} "
        f"client-resources-num-gpus={sim.gpus(torch.cuda.is_available())}"
    )


def flwr_env(home: Path) -> dict[str, str]:
    """The environment of a `flwr` command on a private local SuperLink: its own Flower home
    and free ports, no run-time `uv sync` of app dependencies, this venv's `flwr` first."""
    env = dict(os.environ)
    env.update(
        {
            "FLWR_HOME": str(home),
            "FLWR_LOCAL_SUPERLINK_HTTP_API_PORT": str(_free_port()),
            "FLWR_LOCAL_CONTROL_API_PORT": str(_free_port()),
            "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
            "PATH": f"{BIN}:{env.get('PATH', '')}",
        }
    )
    return env


def run_status(env: dict[str, str]) -> str | None:
    """The newest run's status on the local SuperLink (e.g. ``finished:completed``)."""
    out = subprocess.run([str(BIN / "flwr"), "ls", "--format", "json"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    try:
        runs = json.loads(out.stdout)["runs"]
    except (ValueError, KeyError, TypeError):
        return None
    if not runs:
        return None
    return max(runs, key=lambda r: r.get("pending-at", ""))["status"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--supernodes", type=int, default=10, help="simulated SuperNodes (clients)")
    ap.add_argument("--home", default=str(ROOT / ".flwr"), help="Flower home for this run")
    ap.add_argument(
        "--dry-run",
        action="store_true",
        help="check the experiment, write its run-config file, print the `flwr run` "
        "command (with the variables it sets) and exit without running it",
    )
    ap.add_argument("args", nargs="*", help="[experiment.toml] [dotted.key=value ...]")
    a = ap.parse_args()
    toml = [x for x in a.args if x.endswith(".toml") and "=" not in x]
    overrides = " ".join(x for x in a.args if x not in toml)
    if len(toml) > 1:
        raise SystemExit(f"give at most one experiment file, got {toml}")
    experiment = toml[0] if toml else None
    try:
        if a.dry_run:
            cmd, env = flwr_command(overrides, a.supernodes, Path(a.home), experiment)
            shown = [f"{k}={env[k]}" for k in DRY_RUN_ENV]
            print(shlex.join(["env", *shown, *cmd]))
            raise SystemExit(0)
        proc = simulate(overrides, a.supernodes, Path(a.home), None, experiment, capture=False)
    except ConfigError as e:
        raise SystemExit(str(e)) from None
    raise SystemExit(proc.returncode)


if __name__ == "__main__":
    main()
