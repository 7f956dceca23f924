"""From an experiment config to concrete client data: dataset, partitions, client test sets.

Both the server (to validate up front and to draw the label-mix plot) and every client
(to pick its own partition) call :func:`build_federation`; it is deterministic for the
config and cached per process, so the dataset is read once per process.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from fedcore.data import ArrayDataset
from fedcore.datasets import load_dataset
from fedcore.experiment import ExperimentConfig
from fedcore.partition import PARTITIONERS, PartitionError, client_test_indices, label_counts
from fedcore.seeds import CLIENT_TEST, OFFSET, derive_seed
from fedcore.sites import ClientData


@dataclass(frozen=True)
class Federation:
    """Global splits plus per-client train indices, label counts and test indices."""

    train: ArrayDataset
    test: ArrayDataset
    client_train: tuple[np.ndarray, ...]
    client_test: tuple[np.ndarray, ...]
    counts: np.ndarray  # (num_partitions, num_classes)

    @property
    def num_clients(self) -> int:
        return len(self.client_train)

    def client_datasets(self, pid: int) -> tuple[ArrayDataset, ArrayDataset]:
        """Train and test set of client ``pid``."""
        if not 0 <= pid < self.num_clients:
            raise PartitionError(f"partition-id {pid} is outside 0..{self.num_clients - 1}")
        return self.train.subset(self.client_train[pid]), self.test.subset(self.client_test[pid])

    def client(self, pid: int) -> ClientData:
        """Client ``pid``'s data as a site would hold it: train and test set, label counts."""
        train, test = self.client_datasets(pid)
        return ClientData(train, test, self.counts[pid])


def _random_subset(ds: ArrayDataset, size: int, seed: int) -> ArrayDataset:
    if size <= 0 or size >= len(ds):
        return ds
    idx = np.sort(np.random.default_rng(seed).choice(len(ds), size=size, replace=False))
    return ds.subset(idx)


def partition_labels(labels: np.ndarray, cfg: ExperimentConfig) -> list[np.ndarray]:
    """Run the configured partitioner on ``labels``."""
    p = cfg.partition
    fn = PARTITIONERS[p.name]
    args: dict = {"num_partitions": p.num_partitions, "seed": cfg.partition_seed}
    if p.name in ("dirichlet", "quantity"):
        args |= {"alpha": p.alpha, "min_partition_size": p.min_partition_size}
    if p.name == "dirichlet":
        args["self_balancing"] = p.self_balancing
    elif p.name == "pathological":
        args["num_classes_per_partition"] = p.num_classes_per_partition
    elif p.name == "shards":
        args["num_shards_per_partition"] = p.num_shards_per_partition
    return fn(labels, **args)


@lru_cache(maxsize=4)
def build_federation(cfg: ExperimentConfig) -> Federation:
    """Load data and partition it as ``cfg`` says (raises PartitionError when impossible).

    ``cfg`` must know its number of clients (``cfg.with_clients(n)``)."""
    if cfg.num_clients < 1:
        raise PartitionError("the number of partitions is not known yet: use cfg.with_clients(n)")
    d = cfg.data
    splits = load_dataset(d.dataset, d.path, d.test_path)
    train = _random_subset(splits.train, d.train_subset, cfg.seed)
    test = _random_subset(splits.test, d.test_subset, derive_seed(cfg.seed, 1, OFFSET))
    labels = train.y.numpy()
    parts = partition_labels(labels, cfg)
    counts = label_counts(labels, parts, train.num_classes)
    test_labels = test.y.numpy()
    size = min(cfg.partition.client_test_size, len(test))
    pools = [np.flatnonzero(test_labels == c) for c in range(counts.shape[1])]
    client_test = tuple(
        client_test_indices(
            test_labels, counts[i], size, derive_seed(cfg.partition_seed, i, CLIENT_TEST), pools
        )
        for i in range(len(parts))
    )
    return Federation(train, test, tuple(parts), client_test, counts)
