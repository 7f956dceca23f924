"""docker/ checked statically (no Docker engine here): flags the pinned flwr accepts, partitions."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker" / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
BIN = Path(sys.executable).parent


@cache
def _help(*cmd: str) -> str:
    out = subprocess.run(
        [str(BIN / cmd[0]), *cmd[1:], "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"COLUMNS": "200", "PATH": str(BIN)},
    )
    return out.stdout + out.stderr


def _flags(command: list[str]) -> list[str]:
    return [a.split("=", 1)[0] for a in command if a.startswith("--")]


def test_every_command_uses_flags_the_installed_flwr_accepts():
    checked = 0
    for name, svc in SERVICES.items():
        cmd = svc.get("command")
        if not isinstance(cmd, list) or not cmd:
            continue
        head = cmd[0]
        if head in ("flower-superlink", "flower-supernode"):
            help_text = _help(head)
        elif head == "flwr":
            help_text = _help("flwr", cmd[1])
        else:
            continue
        for flag in _flags(cmd):
            assert re.search(rf"{re.escape(flag)}\b", help_text), f"{name}: {flag} unknown"
            checked += 1
    assert checked >= 20


def test_register_job_uses_a_valid_flwr_subcommand():
    script = SERVICES["register"]["command"][0]
    assert "flwr supernode register" in script
    assert "PUBLIC_KEY" in _help("flwr", "supernode", "register")
    for i in range(3):
        assert "supernode-$$i.pub" in script or f"supernode-{i}.pub" in script


def test_supernodes_cover_every_partition_once():
    nodes = {n: s for n, s in SERVICES.items() if s.get("command", [""])[0] == "flower-supernode"}
    assert len(nodes) == 3
    ids, totals = [], set()
    for svc in nodes.values():
        cfg = next(a for a in svc["command"] if a.startswith("--node-config="))
        kv = dict(x.split("=") for x in shlex.split(cfg.split("=", 1)[1]))
        ids.append(int(kv["partition-id"]))
        totals.add(int(kv["num-partitions"]))
        assert any(a.startswith("--auth-supernode-private-key=") for a in svc["command"])
        assert any(a.startswith("--root-certificates=") for a in svc["command"])
    assert sorted(ids) == list(range(len(nodes))) and totals == {len(nodes)}
    run_cfg = next(a for a in SERVICES["run"]["command"] if a.startswith("--run-config="))
    assert f"partition.num_partitions={len(nodes)}" in run_cfg


def test_superlink_is_secure_and_image_pins_versions():
    sl = SERVICES["superlink"]["command"]
    assert "--enable-supernode-auth" in sl and "--insecure" not in sl
    assert "--disable-runtime-dependency-installation" in sl
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert "torch==2.13.0" in dockerfile and "dataset-fashion-mnist" in dockerfile
    for src in re.findall(r"^COPY (\S+)", dockerfile, flags=re.M):
        for part in src.split():
            assert (ROOT / part).exists(), f"Dockerfile copies missing {part}"
    assert "flwr[simulation]==1.42.*" in (ROOT / "pyproject.toml").read_text()
    cli = (ROOT / "docker" / "cli" / "config.toml").read_text()
    assert 'address = "superlink:9092"' in cli and "/secrets/ca.crt" in cli


def test_make_secrets_creates_what_compose_mounts(tmp_path):
    from scripts.certs import main

    main([str(tmp_path), "--names", "superlink,localhost", "--supernodes", "3"])
    for name in ("ca.crt", "server.pem", "server.key", "supernode-0", "supernode-2.pub"):
        assert (tmp_path / name).is_file()
    referenced = set()
    for svc in SERVICES.values():
        cmd = svc.get("command") or []
        text = " ".join(map(str, cmd))
        for i in range(3):  # the register job loops over $$i
            referenced |= set(re.findall(r"/secrets/([\w.-]+)", text.replace("$$i", str(i))))
    assert referenced <= {p.name for p in tmp_path.iterdir()}
