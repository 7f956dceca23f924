"""docker/: checked statically (flags the pinned flwr accepts, each node's own site, the loopback
rewrite), and opt-in under a real engine (``FEDZDA_DOCKER_SELFTEST=1``: docker/selftest.sh)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
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


def test_each_supernode_mounts_only_its_own_site():
    nodes = {n: s for n, s in SERVICES.items() if s.get("command", [""])[0] == "flower-supernode"}
    assert len(nodes) == 3
    for i, svc in enumerate(nodes.values()):
        cfg = next(a for a in svc["command"] if a.startswith("--node-config="))
        kv = dict(x.split("=") for x in shlex.split(cfg.split("=", 1)[1]))
        assert kv == {"data-path": f"/site/site-00{i}.npz", "site-name": f"site-00{i}"}
        data = [v for v in svc["volumes"] if "/secrets" not in v]
        assert data == [f"./sites/site-00{i}:/site:ro"]  # no other site, no dataset
        assert any(a.startswith("--auth-supernode-private-key=") for a in svc["command"])
        assert any(a.startswith("--root-certificates=") for a in svc["command"])
    run_cfg = next(a for a in SERVICES["run"]["command"] if a.startswith("--run-config="))
    assert run_cfg == "--run-config=/server-data/run-config.toml"
    assert "./sites/server:/server-data:ro" in SERVICES["superlink"]["volumes"]


def test_make_sites_script_writes_what_compose_mounts():
    script = (ROOT / "docker" / "make-sites.sh").read_text()
    assert "scripts.make_sites" in script and "--clients 3" in script
    for name in ("site-00$i", "server", "run-config.toml", "/server-data/test.npz"):
        assert name in script
    assert "docker/sites" in (ROOT / ".dockerignore").read_text()  # never in the image


def test_superlink_is_secure_and_image_pins_versions():
    sl = SERVICES["superlink"]["command"]
    assert "--enable-supernode-auth" in sl and "--insecure" not in sl
    assert "--disable-runtime-dependency-installation" in sl
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert 'TORCH="torch==2.14.1 torchvision==0.29.1"' in dockerfile
    assert "dataset" not in dockerfile.split("ARG BASE_IMAGE")[1]  # the image holds no data
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


def test_loopback_rewrite_keeps_the_demo_but_joins_the_host_network():
    sys.path.insert(0, str(ROOT / "docker"))
    from hostnet import rewrite

    doc = rewrite(COMPOSE, 40001, [40011, 40012, 40013], "/tmp/cli")
    assert set(doc["services"]) == set(SERVICES)
    text = yaml.safe_dump(doc)
    assert "superlink:9092" not in text and "0.0.0.0" not in text
    for name, svc in doc["services"].items():
        assert svc["network_mode"] == "host" and "ports" not in svc and "build" not in svc
        assert svc["image"] == SERVICES[name]["image"]
    sl = doc["services"]["superlink"]["command"]
    assert "--port=40001" in sl and "--enable-supernode-auth" in sl
    node_ports = []
    for i in range(3):
        cmd = doc["services"][f"supernode-{i}"]["command"]
        assert "--superlink=127.0.0.1:40001" in cmd
        assert f"--auth-supernode-private-key=/secrets/supernode-{i}" in cmd
        node_ports += [a for a in cmd if a.startswith("--port=")]
    assert node_ports == ["--port=40011", "--port=40012", "--port=40013"]
    run = doc["services"]["run"]
    assert "--run-config=/server-data/run-config.toml" in run["command"]
    assert "/tmp/cli/config.toml:/flwr-cli/config.toml:ro" in run["volumes"]


@pytest.mark.slow(seconds=900)  # builds an image: first when opted in
@pytest.mark.skipif(
    os.environ.get("FEDZDA_DOCKER_SELFTEST") != "1",
    reason="opt-in (FEDZDA_DOCKER_SELFTEST=1, root): builds the image, runs the compose demo",
)
def test_compose_demo_under_a_real_engine():
    out = subprocess.run(
        ["bash", "docker/selftest.sh"], cwd=ROOT, capture_output=True, text=True, timeout=3600
    )
    assert out.returncode == 0 and "passed in" in out.stdout, out.stdout[-3000:] + out.stderr


def test_deps_lists_requirements_without_the_torch_builds():
    sys.path.insert(0, str(ROOT / "scripts"))
    from deps import requirements

    image = requirements([], ["torch", "torchvision"])
    assert not [r for r in image if r.startswith("torch")]
    assert "flwr[simulation]==1.42.*" in image
    cpu = requirements(["dev"], ["torchvision"])
    assert any(r.startswith("torch>=") for r in cpu) and "pytest>=8" in cpu
    assert not [r for r in cpu if r.startswith("torchvision")]
