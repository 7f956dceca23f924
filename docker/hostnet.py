"""Rewrite the compose demo for one machine's loopback (used by ``docker/selftest.sh``).

Every service joins the host's network (no bridge, nothing published), the SuperLink
listens on 127.0.0.1:PORT, each SuperNode gets its own runtime port, the CLI connection
points at 127.0.0.1, and the image is the one the self-test built (no ``build:``); the
run's rounds are in the run config ``docker/make-sites.sh`` writes. Everything else
(commands, TLS, node authentication, volumes, dependencies) is the demo's own.

    python docker/hostnet.py OUT_DIR --port P --supernode-ports P0,P1,P2
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent


def rewrite(compose: dict, port: int, node_ports: list[int], cli_dir: str) -> dict:
    """The demo's compose document, rewritten for host networking on loopback."""
    out = {"services": {}, "volumes": compose.get("volumes", {})}
    for name, svc in compose["services"].items():
        svc = dict(svc)
        svc.pop("build", None)
        svc.pop("ports", None)
        svc["network_mode"] = "host"
        svc["volumes"] = [v.replace("./cli/", f"{cli_dir}/") for v in svc.get("volumes", [])]
        cmd = svc.get("command")
        if isinstance(cmd, list):
            new = []
            for arg in cmd:
                arg = arg.replace("superlink:9092", f"127.0.0.1:{port}")
                arg = arg.replace("--host=0.0.0.0", "--host=127.0.0.1")
                arg = arg.replace("--port=9092", f"--port={port}")
                new.append(arg)
            if name.startswith("supernode-"):
                new.append(f"--port={node_ports[int(name.rsplit('-', 1)[1])]}")
            svc["command"] = new
        out["services"][name] = svc
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--supernode-ports", required=True)
    a = ap.parse_args()
    compose = yaml.safe_load((HERE / "docker-compose.yml").read_text())
    a.out_dir.mkdir(parents=True, exist_ok=True)
    cli = a.out_dir / "cli"
    cli.mkdir(exist_ok=True)
    toml = (HERE / "cli" / "config.toml").read_text()
    (cli / "config.toml").write_text(toml.replace("superlink:9092", f"127.0.0.1:{a.port}"))
    ports = [int(p) for p in a.supernode_ports.split(",")]
    doc = rewrite(compose, a.port, ports, str(cli.resolve()))
    (a.out_dir / "compose.yml").write_text(yaml.safe_dump(doc, sort_keys=False))


if __name__ == "__main__":
    main()
