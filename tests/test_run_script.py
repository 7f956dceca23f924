"""scripts/run.sh --dry-run: the `flwr run` command the README's run command would start."""

import os
import shlex
import subprocess
import tomllib
from itertools import takewhile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _dry_run(home: Path, *args: str, supernodes: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "NUM_SUPERNODES"}
    if supernodes is not None:
        env["NUM_SUPERNODES"] = supernodes
    proc = subprocess.run(
        ["bash", "scripts/run.sh", "--dry-run", "--home", str(home), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout  # the command only: nothing ran
    words = shlex.split(lines[0])
    assert words[0] == "env"
    assignments = list(takewhile(lambda w: "=" in w, words[1:]))  # VAR=value, then the command
    variables = dict(w.split("=", 1) for w in assignments)
    cmd = words[1 + len(assignments) :]
    assert Path(cmd[0]).name == "flwr" and cmd[1:4] == ["run", ".", "--stream"], cmd
    federation = dict(kv.split("=", 1) for kv in cmd[cmd.index("--federation-config") + 1].split())
    run_config = Path(cmd[cmd.index("--run-config") + 1])
    return {
        "env": variables,
        "federation": federation,
        "run_config": tomllib.loads(run_config.read_text()),
        "run_config_path": run_config,
    }


def test_run_sh_starts_ten_clients_unless_num_supernodes_says_otherwise(tmp_path):
    default = _dry_run(tmp_path / "a", "rounds=2")
    # 10 clients: the federation's size, which the experiment's partition count follows (0)
    assert default["federation"]["num-supernodes"] == "10"
    assert default["federation"]["client-resources-num-cpus"] == "1"
    assert default["run_config"] == {"rounds": 2}
    assert default["run_config_path"] == tmp_path / "a" / "run-config.toml"
    assert default["env"]["FLWR_HOME"] == str(tmp_path / "a")
    assert default["env"]["FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION"] == "1"
    # nothing started: the Flower home holds the run-config file only (no SuperLink state)
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["run-config.toml"]

    three = _dry_run(tmp_path / "b", "configs/default.toml", "train.lr=0.05", supernodes="3")
    assert three["federation"]["num-supernodes"] == "3"
    cfg = three["run_config"]
    assert cfg["train"]["lr"] == 0.05 and cfg["train"]["momentum"] == 0.9  # override wins
    assert cfg["rounds"] == 20 and cfg["partition"]["alpha"] == 0.1  # the file's keys
    assert "num_partitions" not in cfg["partition"]  # left to follow the node count


def test_dry_run_still_refuses_a_bad_configuration(tmp_path):
    proc = subprocess.run(
        ["bash", "scripts/run.sh", "--dry-run", "--home", str(tmp_path), "rounds=0"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1 and "rounds: must be >= 1, got 0" in proc.stderr
    assert proc.stdout == "" and not (tmp_path / "run-config.toml").exists()
