"""TLS and SuperNode-authentication material for a deployment (``cryptography`` package).

Creates, in one directory:

* ``ca.crt``/``ca.key`` — a self-signed certificate authority;
* ``server.pem``/``server.key`` — the SuperLink's certificate, signed by the CA, valid for
  every address the SuperLink is reached at (IPs and DNS names as subject alternative names);
* ``supernode-<i>`` / ``supernode-<i>.pub`` — one EC (NIST P-384) key pair per SuperNode in
  OpenSSH format, as ``flower-supernode --auth-supernode-private-key`` and
  ``flwr supernode register`` expect.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID


def _write(path: Path, data: bytes, private: bool = False) -> Path:
    path.write_bytes(data)
    if private:
        path.chmod(0o600)
    return path


def _pem_key(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _san(names: Sequence[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def make_tls(directory: Path, server_names: Sequence[str], days: int = 365) -> dict[str, Path]:
    """Create a CA and a SuperLink certificate for ``server_names``; return the file paths."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fedzda deployment CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, server_names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(_san(server_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return {
        "ca_cert": _write(directory / "ca.crt", ca_cert.public_bytes(pem)),
        "ca_key": _write(directory / "ca.key", _pem_key(ca_key), private=True),
        "server_cert": _write(directory / "server.pem", cert.public_bytes(pem)),
        "server_key": _write(directory / "server.key", _pem_key(key), private=True),
    }


def make_supernode_keys(directory: Path, count: int) -> list[tuple[Path, Path]]:
    """One OpenSSH-format EC P-384 key pair per SuperNode: ``[(private, public), ...]``."""
    directory.mkdir(parents=True, exist_ok=True)
    pairs = []
    for i in range(count):
        key = ec.generate_private_key(ec.SECP384R1())
        private = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        pairs.append(
            (
                _write(directory / f"supernode-{i}", private, private=True),
                _write(directory / f"supernode-{i}.pub", public + b"\n"),
            )
        )
    return pairs


def main(argv: list[str] | None = None) -> None:
    """``python -m scripts.certs DIR --names superlink,localhost --supernodes 3``"""
    import argparse

    ap = argparse.ArgumentParser(description="Create TLS and SuperNode-auth material.")
    ap.add_argument("directory", type=Path)
    ap.add_argument(
        "--names",
        default="localhost,127.0.0.1",
        help="comma-separated addresses the SuperLink is reached at",
    )
    ap.add_argument("--supernodes", type=int, default=3)
    a = ap.parse_args(argv)
    make_tls(a.directory, [n for n in a.names.split(",") if n])
    make_supernode_keys(a.directory, a.supernodes)


if __name__ == "__main__":
    main()
