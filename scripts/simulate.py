"""Run this app through `flwr run .` on a private local simulation SuperLink.

The SuperLink gets its own Flower home and free ports, runs the apps in this environment
(no run-time `uv sync`), and is stopped with everything it spawned when the run ends. The
tests and the benchmark harness use this; users use scripts/run.sh.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from scripts.proctree import kill_tree

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def simulate(
    overrides: str, num_supernodes: int, home: Path, timeout: float | None = None
) -> subprocess.CompletedProcess:
    """`flwr run . -c overrides="..."` with ``num_supernodes`` simulated SuperNodes."""
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
    cmd = [str(BIN / "flwr"), "run", ".", "--stream",
           "--federation-config", f"num-supernodes={num_supernodes}",
           "-c", f'overrides="{overrides}"']  # fmt: skip
    try:
        return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=timeout)  # fmt: skip
    finally:
        kill_tree(f"flower-superlink.*{home}/")
