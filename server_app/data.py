"""What the ServerApp knows of the federation's data, as one value: the node map, the data
spec, the central test set (optional with sites), label counts (when known) and the keys
every message carries.

Under simulation (any dataset but ``sites``) the server builds the whole federation, as
every ClientApp does. With ``data.dataset = "sites"`` it reads no training data: it asks
the SuperNodes (:mod:`server_app.sites`) and reads at most ``data.test_path``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.serverapp import Grid

from fedcore.config import ExperimentConfig
from fedcore.data import ArrayDataset, DataSpec
from fedcore.federation import Federation, build_federation
from fedcore.protocol import site_message_config
from fedcore.sites import read_npz_splits
from server_app.rounds import partition_map
from server_app.sites import site_federation


@dataclass
class ServerData:
    """The federation's data as the server sees it."""

    cfg: ExperimentConfig  # with the federation's number of clients
    nodes: dict[int, int]  # node_id -> partition id
    spec: DataSpec
    test: ArrayDataset | None  # the central test set, if any
    counts: np.ndarray | None  # (clients, classes), where known
    max_examples: int  # the most training samples a reply may claim
    largest: int  # the largest client's training samples (SecAgg+'s bound)
    names_partitions: bool  # every message names its node's partition id
    static_nodes: bool  # nodes never leave (simulation): no need to list them each round
    message: dict[str, Any] = field(default_factory=dict)  # keys every message carries
    federation: Federation | None = None  # simulation: every client's data (output.leakage)
    startup: dict[str, float] = field(default_factory=dict)
    client_test_sizes: list[int] | None = None
    names: tuple[str, ...] = ()  # the sites, by partition id


def simulated(grid: Grid, base: ExperimentConfig) -> ServerData:
    """The whole federation, built here as every ClientApp builds it."""
    t0 = time.perf_counter()
    nodes, assigned = partition_map(grid, base.server)
    t1 = time.perf_counter()
    cfg = base.with_clients(len(nodes))
    fed = build_federation(cfg)  # impossible partitions fail here, before round 1
    startup = {"partition_map_seconds": t1 - t0, "data_seconds": time.perf_counter() - t1}
    sizes = fed.counts.sum(1)
    return ServerData(
        cfg, nodes, fed.train.spec, fed.test, fed.counts, len(fed.train), int(sizes.max()),
        assigned, assigned, federation=fed, startup=startup,
        client_test_sizes=[len(t) for t in fed.client_test],
    )  # fmt: skip


def central_test(path: str, spec: DataSpec) -> ArrayDataset:
    """The server's test file (an .npz with x, y) normalised with the federation's spec."""
    x, y = read_npz_splits(Path(path))["train"]
    if tuple(x.shape[1:]) != tuple(spec.input_shape) or int(y.max()) >= spec.num_classes:
        raise ValueError(
            f"data.test_path {path}: images {tuple(x.shape[1:])} with labels up to "
            f"{int(y.max())} do not fit the federation ({spec.input_shape}, "
            f"{spec.num_classes} classes)"
        )
    return ArrayDataset.from_pixels(torch.from_numpy(x), torch.from_numpy(y), spec.mean,
                                    spec.std, spec.classes)  # fmt: skip


def of_sites(grid: Grid, base: ExperimentConfig) -> ServerData:
    """The sites that answered and fit; the central test set only if configured."""
    t0 = time.perf_counter()
    sites = site_federation(grid, base)
    cfg = base.with_clients(sites.num_clients)
    spec = sites.spec
    test = central_test(cfg.data.test_path, spec) if cfg.data.test_path else None
    message = site_message_config(spec.mean, spec.std, spec.num_classes)
    return ServerData(
        cfg, sites.partitions, spec, test, sites.counts, sum(sites.num_examples),
        max(sites.num_examples), True, False, message,
        startup={"sites_seconds": time.perf_counter() - t0}, names=sites.names,
    )  # fmt: skip


def server_data(grid: Grid, base: ExperimentConfig) -> ServerData:
    """The federation's data as ``data.dataset`` says: sites, or simulated partitions."""
    return of_sites(grid, base) if base.data.dataset == "sites" else simulated(grid, base)
