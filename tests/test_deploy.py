"""SuperLink + SuperNodes with TLS and SuperNode authentication, each SuperNode holding only
its own site file and the server only a test file: loopback and netns hosts, and the same
per-round numbers as the simulation of the same partitions (reproducible mode)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from fedcore.config import load_config
from fedcore.federation import build_federation
from scripts.deploy import Deployment, run, superlink_command, supernode_command
from scripts.make_sites import site_keys, write_sites
from tests.conftest import core_numbers

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent

# a small federation of 3 clients (partitions as the simulation draws them)
FEDERATION = (
    "partition.alpha=1.0 data.train_subset=1500 data.test_subset=500 "
    "partition.client_test_size=200 zdac.inversion.steps=20 zdas.inversion.steps=20 "
    "zdas.samples_per_client=30 zdac.bank_per_class=8 server.evaluate_every=2 name=sites"
)  # 2 rounds (ZDAC inverts from round 2), federated evaluation in the last one only: a
# SuperNode starts a process per message


def _sites(tmp_path: Path, bad: bool = False) -> tuple[list[str], str]:
    """The 3 partitions as site files (plus, with ``bad``, one unreadable site) and the
    run-config keys of that federation of sites."""
    fed = build_federation(load_config(None, FEDERATION).with_clients(3))
    paths = [str(p) for p in write_sites(fed, tmp_path / "sites")]
    keys = site_keys(fed, tmp_path / "sites" / "test.npz")
    if bad:
        broken = tmp_path / "sites" / "site-broken.npz"
        broken.write_bytes(b"this is not an npz archive")
        paths.append(str(broken))
        keys["data.num_sites"] = len(paths)
    return paths, " ".join(f"{k}='{v}'" for k, v in keys.items())


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _numbers(run_dir: Path) -> tuple[list, list]:
    rows = _rows(run_dir)
    return [r["global_accuracy"] for r in rows], rows[-1]["client_accuracies"]


def _check_sites_run(run_dir: Path, rounds: int) -> None:
    rows = _rows(run_dir)
    assert [r["round"] for r in rows] == list(range(1, rounds + 1))
    assert len(rows[-1]["client_accuracies"]) == 3
    assert (run_dir / "model_final.pt").is_file() and (run_dir / "config.yaml").is_file()
    parts = json.loads((run_dir / "partitions.json").read_text())
    assert parts["sites"] == ["site-000", "site-001", "site-002"]


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
    sites = Deployment(num_supernodes=2, workdir=tmp_path, sites=["/d/a.npz", "/d/b.npz"])
    cmd = " ".join(supernode_command(sites, 1, None, None))
    assert "data-path='/d/b.npz' site-name='b'" in cmd and "/d/a.npz" not in cmd
    assert "partition-id" not in cmd


@pytest.mark.slow(seconds=105)
def test_fedavg_sites_deployment_gives_the_simulations_numbers(tmp_path, monkeypatch):
    """Loopback SuperLink + one SuperNode per site file (TLS, node auth), the server holding
    only test.npz: the simulation's numbers of the same partitions (the core round loop,
    which the golden test holds equal to Flower's simulation), per round, exactly
    (reproducible mode). A fourth, unreadable site is refused with its reason."""
    monkeypatch.setenv("FEDZDA_REPRODUCIBLE", "1")  # the same kernels in every process
    keys = f"{FEDERATION} algorithm=fedavg rounds=2"
    paths, site_config = _sites(tmp_path, bad=True)
    dep = Deployment(num_supernodes=len(paths), workdir=tmp_path / "deploy", port=0,
                     supernode_port=0, run_config=f"{keys} {site_config}", timeout=500,
                     sites=paths)  # fmt: skip
    run_dir = run(dep)
    _check_sites_run(run_dir, 2)
    assert list(_numbers(run_dir)) == list(core_numbers(keys, 3))
    assert "https://" in (dep.workdir / "logs" / "superlink.log").read_text()
    assert all(p.poll() is not None for p in dep.procs)  # everything stopped
    server_log = (dep.workdir / "logs" / "flwr-run.log").read_text()
    assert "refused node" in server_log and "site-broken" in server_log
    site_log = (dep.workdir / "logs" / "supernode-3.log").read_text()
    assert "refuses to join" in site_log and "not an .npz archive" in site_log


@pytest.mark.slow(seconds=110)
def test_zda_sites_across_hosts_give_the_simulations_numbers(tmp_path, monkeypatch, hosts):
    """The multi-host recipe: a SuperLink host and three SuperNode hosts (network
    namespaces on a private bridge where root allows, else loopback), each SuperNode host
    given only its own site file: the core round loop's ZDA numbers of the same partitions,
    per round, exactly (the golden test holds the core loop equal to Flower's simulation)."""
    monkeypatch.setenv("FEDZDA_REPRODUCIBLE", "1")
    keys = f"{FEDERATION} algorithm=zda rounds=2"
    paths, site_config = _sites(tmp_path)
    where: dict = {"port": 0, "supernode_port": 0}
    if hosts:
        names, addrs = hosts
        where |= {"superlink_address": addrs[0], "bind": addrs[0], "supernode_hosts": names[1:],
                  "launcher": "ip netns exec {host}",
                  "superlink_launcher": f"ip netns exec {names[0]}"}  # fmt: skip
    dep = Deployment(num_supernodes=3, workdir=tmp_path / "deploy", timeout=500, sites=paths,
                     run_config=f"{keys} {site_config}", **where)  # fmt: skip
    run_dir = run(dep)
    _check_sites_run(run_dir, 2)
    assert list(_numbers(run_dir)) == list(core_numbers(keys, 3))
    rows = _rows(run_dir)
    assert all(r["train_zdas_samples"] > 0 and r["train_refused"] == 0 for r in rows)
    assert rows[-1]["train_syn_count"] > 0  # ZDAC: the sites trained on synthetic samples too
    if hosts:
        log = (dep.workdir / "logs" / "superlink.log").read_text()
        assert f"https://{hosts[1][0]}:{dep.port}" in log


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def hosts():
    """A SuperLink namespace and 3 SuperNode namespaces on a private bridge, 127.100.x.y;
    None (loopback instead) where network namespaces cannot be made."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        yield None
        return
    tag = f"{os.getpid() % 10000}"
    bridge, names = f"fzb{tag}", [f"fzs{tag}"] + [f"fzn{tag}x{i}" for i in range(3)]
    addrs = ["127.100.0.1"] + [f"127.100.0.{10 + i}" for i in range(3)]
    try:
        _ip("netns", "add", names[0])
    except subprocess.CalledProcessError:
        yield None
        return
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
