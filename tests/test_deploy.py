"""SuperLink + SuperNodes with TLS and SuperNode authentication: loopback and netns hosts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from scripts.deploy import Deployment, run, superlink_command, supernode_command

pytestmark = pytest.mark.e2e

TINY = (
    "rounds=2 partition.num_partitions=3 partition.alpha=1.0 "
    "data.train_subset=1500 data.test_subset=500 partition.client_test_size=200 name=deploy"
)


def _check_run(run_dir: Path) -> None:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [1, 2]
    assert len(rows[-1]["client_accuracies"]) == 3
    assert rows[-1]["global_accuracy"] > 0.4
    assert (run_dir / "model_final.pt").is_file() and (run_dir / "config.yaml").is_file()
    # real SuperNodes own their partitions: the server asks each (server.partition_map=auto)
    assert json.loads((run_dir / "summary.json").read_text())["partition_map"] == "query"


def test_commands_default_to_tls_and_node_auth(tmp_path):
    dep = Deployment(num_supernodes=2, workdir=tmp_path)
    tls = {"ca_cert": Path("ca"), "server_cert": Path("crt"), "server_key": Path("key")}
    sl = superlink_command(dep, tls)
    assert "--enable-supernode-auth" in sl and "--ssl-certfile" in sl and "--insecure" not in sl
    assert "--disable-runtime-dependency-installation" in sl
    sn = supernode_command(dep, 1, Path("ca"), Path("k"))
    assert "--root-certificates" in sn and "--auth-supernode-private-key" in sn
    assert "partition-id=1 num-partitions=2" in sn
    assert "--insecure" in superlink_command(dep, None)


@pytest.mark.slow
def test_loopback_deployment_with_tls_and_auth(tmp_path):
    dep = Deployment(num_supernodes=3, workdir=tmp_path, port=0, supernode_port=0,
                     run_config=TINY, timeout=500)  # fmt: skip
    run_dir = run(dep)
    _check_run(run_dir)
    assert (tmp_path / "certs" / "ca.crt").is_file()
    assert "https://" in (tmp_path / "logs" / "superlink.log").read_text()
    assert all(p.poll() is not None for p in dep.procs)  # everything stopped


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def netns_hosts():
    """A SuperLink namespace and 3 SuperNode namespaces on a private bridge, 127.100.x.y."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2 (`ip`)")
    tag = f"{os.getpid() % 10000}"
    bridge, names = f"fzb{tag}", [f"fzs{tag}"] + [f"fzn{tag}x{i}" for i in range(3)]
    addrs = ["127.100.0.1"] + [f"127.100.0.{10 + i}" for i in range(3)]
    try:
        _ip("netns", "add", names[0])
    except subprocess.CalledProcessError as e:
        pytest.skip(f"`ip netns add` is unavailable here: {e.stderr.decode().strip()}")
    try:
        _ip("link", "add", bridge, "type", "bridge")
        _ip("link", "set", bridge, "up")
        for k, (ns, addr) in enumerate(zip(names, addrs, strict=True)):
            if k:
                _ip("netns", "add", ns)
            veth = f"fzv{tag}x{k}"
            _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("link", "set", veth, "master", bridge, "up")
            ex = ["netns", "exec", ns, "ip"]
            _ip(*ex, "link", "set", "lo", "up")
            _ip(*ex, "addr", "add", f"{addr}/24", "dev", "eth0")
            _ip(*ex, "link", "set", "eth0", "up")
            # 127/8 is loopback-only by default: route 127.100.0.0/24 over eth0 instead.
            _ip(*ex, "route", "del", "local", "127.0.0.0/8", "dev", "lo", "table", "local")
            _ip(*ex, "route", "replace", "local", "127.0.0.1", "dev", "lo", "table", "local")
            subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    "sysctl",
                    "-qw",
                    "net.ipv4.conf.all.route_localnet=1",
                    "net.ipv4.conf.eth0.route_localnet=1",
                ],
                check=True,
            )
        yield names, addrs
    finally:
        for ns in names:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)


@pytest.mark.slow
def test_netns_deployment_three_hosts(tmp_path, netns_hosts):
    names, addrs = netns_hosts
    dep = Deployment(
        num_supernodes=3,
        workdir=tmp_path,
        superlink_address=addrs[0],
        bind=addrs[0],
        port=0,
        supernode_port=0,
        supernode_hosts=names[1:],
        launcher="ip netns exec {host}",
        superlink_launcher=f"ip netns exec {names[0]}",
        run_config=TINY,
        timeout=500,
    )
    _check_run(run(dep))
    log = (tmp_path / "logs" / "superlink.log").read_text()
    assert f"https://{addrs[0]}:{dep.port}" in log
