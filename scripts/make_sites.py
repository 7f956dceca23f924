"""Write each partition of a configured federation as one site file, for demos and tests.

    python -m scripts.make_sites --out sites/ --clients 3 [experiment.toml] [key=value ...]

Site ``i`` (``site-000.npz``, ...) holds partition ``i`` exactly as the simulation draws it
(``x``, ``y``: its training samples in the simulation's order; ``x_test``, ``y_test``: its
client test set), as uint8 pixels. ``test.npz`` is the central test set for the server, and
``sites.toml`` the run-config keys of the same federation of sites (``data.dataset =
"sites"``, the number of sites, the test file, and the simulation's exact normalisation and
classes, so that a deployment gives the simulation's numbers bit for bit). Give SuperNode
``i`` ``--node-config "data-path=<out>/site-00i.npz"`` and nothing else of the data.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from fedcore.config import ConfigError
from fedcore.federation import Federation, build_federation
from fedcore.runconfig import run_config_file, toml_value

ROOT = Path(__file__).resolve().parent.parent


def _pixels(ds) -> np.ndarray:
    if ds.pixels is None:
        raise ConfigError("make_sites needs a dataset read as uint8 pixels (IDX, npz, vision)")
    return ds.pixels.numpy()


def site_keys(fed: Federation, test_file: Path) -> dict[str, object]:
    """The run-config keys of this federation as sites (see the module docstring)."""
    spec = fed.train.spec
    return {
        "data.dataset": "sites",
        "data.path": "",
        "data.test_path": str(test_file),
        "data.num_sites": fed.num_clients,
        "data.input_shape": ",".join(map(str, spec.input_shape)),
        "data.num_classes": spec.num_classes,
        "data.mean": ",".join(repr(v) for v in spec.mean),  # exact: float32 values as floats
        "data.std": ",".join(repr(v) for v in spec.std),
        "data.train_subset": 0,
        "data.test_subset": 0,
    }


def write_sites(fed: Federation, out: Path) -> list[Path]:
    """``site-NNN.npz`` per partition, ``test.npz`` and ``sites.toml`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    train, test = _pixels(fed.train), _pixels(fed.test)
    ytr, yte = fed.train.y.numpy(), fed.test.y.numpy()
    paths = []
    for i in range(fed.num_clients):
        tr, te = fed.client_train[i], fed.client_test[i]
        path = out / f"site-{i:03d}.npz"
        np.savez_compressed(path, x=train[tr], y=ytr[tr], x_test=test[te], y_test=yte[te])
        paths.append(path)
    test_file = (out / "test.npz").resolve()
    np.savez_compressed(test_file, x=test, y=yte)
    keys = site_keys(fed, test_file)
    (out / "sites.toml").write_text("".join(f"{k} = {toml_value(v)}\n" for k, v in keys.items()))
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="directory for the site files")
    ap.add_argument("--clients", type=int, required=True, help="number of partitions (sites)")
    ap.add_argument("args", nargs="*", help="[experiment.toml] [dotted.key=value ...]")
    a = ap.parse_args(argv)
    toml = [x for x in a.args if x.endswith(".toml") and "=" not in x]
    overrides = " ".join(x for x in a.args if x not in toml)
    try:
        cfg = run_config_file(toml[0] if toml else None, overrides, ROOT)[1]
        fed = build_federation(cfg.with_clients(a.clients))
    except (ConfigError, ValueError) as e:
        print(f"make_sites: {e}")
        return 1
    paths = write_sites(fed, a.out)
    print(f"make_sites: {len(paths)} sites, test.npz and sites.toml in {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
