"""Deploy fedzda on a SuperLink and N SuperNodes, run it, gather the run, stop everything.

TLS and SuperNode authentication are on by default: the recipe creates a CA, the SuperLink
certificate (for every address it is reached at) and one key pair per SuperNode, registers
the SuperNodes' public keys with the SuperLink, and starts each SuperNode with its
``partition-id``/``num-partitions``. ``--insecure`` switches both off, only when asked.

SuperNodes run on this host, or on the hosts given, through a launcher prefix: with
``--supernode-hosts a,b,c --launcher 'ssh {host}'`` SuperNode ``i`` starts as
``ssh <host_i> flower-supernode ...`` (the hosts need this project's .venv on PATH and the
certificate/key files at the same paths); the tests use ``'ip netns exec {host}'``.
With ``--sites a.npz,b.npz,...`` SuperNode ``i`` is started with only its own data,
``--node-config "data-path=<site i> site-name=<its stem>"`` (a federation of sites: add
``data.dataset='sites' data.num_sites=N`` to the run config, ``scripts/make_sites.py``
writes both); otherwise with ``partition-id``/``num-partitions``.
The SuperLink, the ServerApp and the run directory are on this host (or inside
``--superlink-launcher``).

    .venv/bin/python -m scripts.deploy --num-supernodes 3 --run-config "rounds=2 name=demo"

The run config is an optional experiment TOML (``--experiment``) plus ``dotted.key=value``
overrides, merged and checked here and passed to ``flwr run`` as one file; the run
directory is ``<workdir>/run`` (``output.dir``), so nothing reads it back from the logs.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from fedcore.runconfig import run_config_file
from scripts.certs import make_supernode_keys, make_tls

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@dataclass
class Deployment:
    """Settings of one deployment."""

    num_supernodes: int
    workdir: Path
    superlink_address: str = "127.0.0.1"  # where SuperNodes and the CLI reach the SuperLink
    bind: str = "127.0.0.1"
    port: int = 9092  # the SuperLink's port; 0: a free one, chosen when the run starts
    supernode_port: int = 9094  # SuperNode i's ClientApp API port is this + i; 0: free ports
    insecure: bool = False
    supernode_hosts: list[str] = field(default_factory=list)
    launcher: str = ""  # e.g. "ssh {host}" or "ip netns exec {host}"
    superlink_launcher: str = ""
    run_config: str = ""  # dotted.key=value overrides
    sites: list[str] = field(default_factory=list)  # site i's data path (SuperNode i)
    experiment: str = ""  # an experiment TOML file (optional)
    timeout: float = 1800.0
    procs: list[subprocess.Popen] = field(default_factory=list)
    supernode_ports: list[int] = field(default_factory=list)  # resolved by choose_ports

    def choose_ports(self) -> None:
        """Resolve port 0 to free ports (on this host's loopback) and each SuperNode's port."""
        if self.port == 0:
            self.port = free_port()
        base = self.supernode_port
        self.supernode_ports = [free_port() if base == 0 else base + i
                                for i in range(self.num_supernodes)]  # fmt: skip

    @property
    def run_dir(self) -> Path:
        return self.workdir / "run"

    @property
    def address(self) -> str:
        return f"{self.superlink_address}:{self.port}"


def free_port() -> int:
    """A port nothing listens on now (tests use these instead of fixed numbers)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "FLWR_HOME": str(home),
            "PATH": f"{BIN}:{env.get('PATH', '')}",
            "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",  # no `uv sync` at run time
        }
    )
    return env


def _prefix(template: str, host: str) -> list[str]:
    return shlex.split(template.format(host=host)) if template else []


def _start(dep: Deployment, cmd: list[str], log: Path, home: Path) -> subprocess.Popen:
    out = open(log, "w")  # noqa: SIM115 - closed when the process is reaped
    proc = subprocess.Popen(
        cmd, stdout=out, stderr=subprocess.STDOUT, env=_env(home), cwd=ROOT, start_new_session=True
    )
    dep.procs.append(proc)
    return proc


def _wait_port(host: str, port: int, timeout: float, launcher: list[str]) -> None:
    """Wait until something listens at host:port (checked from inside ``launcher``)."""
    probe = f"import socket; socket.create_connection(({host!r}, {port}), timeout=1)"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not launcher:
            try:
                socket.create_connection((host, port), timeout=1).close()
                return
            except OSError:
                pass
        elif (
            subprocess.run([*launcher, sys.executable, "-c", probe], capture_output=True).returncode
            == 0
        ):
            return
        time.sleep(0.5)
    raise TimeoutError(f"nothing listens at {host}:{port} after {timeout:.0f}s")


def write_cli_config(home: Path, address: str, ca: Path | None) -> None:
    """A Flower CLI config whose default SuperLink connection is this deployment."""
    home.mkdir(parents=True, exist_ok=True)
    tls = f'root-certificates = "{ca}"' if ca else "insecure = true"
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "fedzda"\n\n[superlink.fedzda]\naddress = "{address}"\n{tls}\n'
    )


def superlink_command(dep: Deployment, tls: dict[str, Path] | None) -> list[str]:
    """``flower-superlink`` with TLS, node authentication and no run-time installs."""
    cmd = [
        str(BIN / "flower-superlink"),
        "--host",
        dep.bind,
        "--port",
        str(dep.port),
        "--database",
        str(dep.workdir / "superlink.db"),
        "--disable-runtime-dependency-installation",
    ]
    if tls is None:
        return [*cmd, "--insecure"]
    return [
        *cmd,
        "--ssl-ca-certfile",
        str(tls["ca_cert"]),
        "--ssl-certfile",
        str(tls["server_cert"]),
        "--ssl-keyfile",
        str(tls["server_key"]),
        "--enable-supernode-auth",
    ]


def node_config(dep: Deployment, i: int) -> str:
    """SuperNode ``i``'s node config: its site's data, or its partition of the dataset."""
    if dep.sites:
        path = Path(dep.sites[i]).resolve()
        name = path.stem if path.suffix else path.name
        return f"data-path='{path}' site-name='{name}'"
    return f"partition-id={i} num-partitions={dep.num_supernodes}"


def supernode_command(dep: Deployment, i: int, ca: Path | None, key: Path | None) -> list[str]:
    """``flower-supernode`` ``i`` with its data and (unless insecure) TLS + auth key."""
    cmd = [
        str(BIN / "flower-supernode"),
        "--superlink",
        dep.address,
        "--node-config",
        node_config(dep, i),
        # each SuperNode's local ClientApp API needs its own port on a shared host
        "--port",
        str(dep.supernode_ports[i] if dep.supernode_ports else dep.supernode_port + i),
    ]
    if ca is None:
        return [*cmd, "--insecure"]
    return [*cmd, "--root-certificates", str(ca), "--auth-supernode-private-key", str(key)]


def run(dep: Deployment) -> Path:
    """Start everything, run the app, return the run directory; always stop what started."""
    dep.workdir.mkdir(parents=True, exist_ok=True)
    dep.choose_ports()
    logs = dep.workdir / "logs"
    logs.mkdir(exist_ok=True)
    if dep.sites and len(dep.sites) != dep.num_supernodes:
        raise ValueError(f"{len(dep.sites)} sites given for {dep.num_supernodes} SuperNodes")
    hosts = dep.supernode_hosts or ["localhost"] * dep.num_supernodes
    if len(hosts) != dep.num_supernodes:
        raise ValueError(f"{len(hosts)} hosts given for {dep.num_supernodes} SuperNodes")
    tls, keys = None, []
    if not dep.insecure:
        names = list(dict.fromkeys([dep.superlink_address, "localhost", "127.0.0.1"]))
        tls = make_tls(dep.workdir / "certs", names)
        keys = make_supernode_keys(dep.workdir / "keys", dep.num_supernodes)
    ca = tls["ca_cert"] if tls else None
    cli_home = dep.workdir / "flwr-cli"
    write_cli_config(cli_home, dep.address, ca)
    sl_prefix = _prefix(dep.superlink_launcher, "superlink")
    try:
        _start(
            dep,
            [*sl_prefix, *superlink_command(dep, tls)],
            logs / "superlink.log",
            dep.workdir / "flwr-superlink",
        )
        _wait_port(dep.superlink_address, dep.port, 60, sl_prefix)
        for _, pub in keys:  # register every SuperNode's public key before it connects
            subprocess.run(
                [*sl_prefix, str(BIN / "flwr"), "supernode", "register", str(pub), "fedzda"],
                env=_env(cli_home),
                cwd=ROOT,
                check=True,
                capture_output=True,
                text=True,
            )
        for i, host in enumerate(hosts):
            key = keys[i][0] if keys else None
            _start(
                dep,
                [*_prefix(dep.launcher, host), *supernode_command(dep, i, ca, key)],
                logs / f"supernode-{i}.log",
                dep.workdir / f"flwr-supernode-{i}",
            )
        config = dep.workdir / "run-config.toml"
        overrides = f"{dep.run_config} output.dir={dep.run_dir}"
        config.write_text(run_config_file(dep.experiment or None, overrides, ROOT)[0])
        cmd = [*sl_prefix, str(BIN / "flwr"), "run", ".", "fedzda", "--stream", "-c", str(config)]
        proc = subprocess.run(
            cmd, env=_env(cli_home), cwd=ROOT, capture_output=True, text=True, timeout=dep.timeout
        )
        (logs / "flwr-run.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0 or not (dep.run_dir / "model_final.pt").is_file():
            raise RuntimeError(
                f"flwr run failed ({proc.returncode}); see {logs}/flwr-run.log:\n"
                + (proc.stdout + proc.stderr)[-3000:]
            )
        return dep.run_dir
    finally:
        stop(dep)


def stop(dep: Deployment, grace: float = 10.0) -> None:
    """Terminate every process this deployment started (process groups), then kill."""
    for p in dep.procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in dep.procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    dep.procs.clear()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--num-supernodes", type=int, default=0, help="default: one per site")
    ap.add_argument("--sites", default="", help="comma-separated data path per SuperNode")
    ap.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where certificates, keys, logs and the run go (default deploy/<time>)",
    )
    ap.add_argument(
        "--superlink-address",
        default="127.0.0.1",
        help="address SuperNodes and the CLI use to reach the SuperLink",
    )
    ap.add_argument(
        "--bind",
        default=None,
        help="address the SuperLink listens on "
        "(default: --superlink-address; 0.0.0.0 for every interface)",
    )
    ap.add_argument("--port", type=int, default=9092)
    ap.add_argument(
        "--insecure",
        action="store_true",
        help="no TLS and no SuperNode authentication (explicit opt-out)",
    )
    ap.add_argument(
        "--supernode-hosts",
        default="",
        help="comma-separated host per SuperNode, used with --launcher",
    )
    ap.add_argument("--launcher", default="", help="prefix per SuperNode, e.g. 'ssh {host}'")
    ap.add_argument("--superlink-launcher", default="", help="prefix for the SuperLink side")
    ap.add_argument("--experiment", default="", help="an experiment TOML file")
    ap.add_argument("--run-config", default="", help="dotted.key=value overrides")
    ap.add_argument("--timeout", type=float, default=3600.0)
    a = ap.parse_args(argv)
    sites = [s for s in a.sites.split(",") if s]
    if not (a.num_supernodes or sites):
        ap.error("give --num-supernodes, or --sites (one SuperNode per site)")
    workdir = a.workdir or ROOT / "deploy" / time.strftime("%Y%m%d-%H%M%S")
    dep = Deployment(
        num_supernodes=a.num_supernodes or len(sites),
        workdir=workdir.resolve(),
        superlink_address=a.superlink_address,
        bind=a.bind or a.superlink_address,
        port=a.port,
        insecure=a.insecure,
        supernode_hosts=[h for h in a.supernode_hosts.split(",") if h],
        launcher=a.launcher,
        superlink_launcher=a.superlink_launcher,
        run_config=a.run_config,
        experiment=a.experiment,
        timeout=a.timeout,
        sites=sites,
    )
    print(f"deploy: run directory {run(dep)} (logs in {dep.workdir / 'logs'})")


if __name__ == "__main__":
    main()
