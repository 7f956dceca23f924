"""Label- and quantity-skew partitioners (argument names follow flwr-datasets).

Each partitioner maps a label vector to ``num_partitions`` index arrays that are disjoint
and, except for ``shards`` with leftover samples, cover every sample. All are
deterministic for a ``seed`` and raise :class:`PartitionError` for impossible requests
before any training starts.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from inversion.allocation import proportional_counts


class PartitionError(ValueError):
    """The requested partitioning cannot be built; the message says why and what to change."""


def _check_common(labels: np.ndarray, num_partitions: int) -> None:
    if num_partitions < 1:
        raise PartitionError(f"num_partitions must be >= 1, got {num_partitions}")
    if num_partitions > len(labels):
        raise PartitionError(
            f"num_partitions={num_partitions} is more than the {len(labels)} samples; "
            "use fewer partitions or more data"
        )


def iid(labels: np.ndarray, num_partitions: int, seed: int = 0) -> list[np.ndarray]:
    """Shuffle and split into ``num_partitions`` near-equal parts."""
    _check_common(labels, num_partitions)
    perm = np.random.default_rng(seed).permutation(len(labels))
    return [np.sort(p) for p in np.array_split(perm, num_partitions)]


def dirichlet(
    labels: np.ndarray,
    num_partitions: int,
    alpha: float,
    min_partition_size: int = 10,
    seed: int = 0,
    max_tries: int = 100,
    self_balancing: bool = False,
) -> list[np.ndarray]:
    """Per class, split samples across partitions with proportions ~ Dir(alpha).

    Resamples (up to ``max_tries``) until every partition has ``min_partition_size``. With
    ``self_balancing`` (as in flwr-datasets), a partition already above the average size
    gets no share of the classes still to be split, which keeps sizes closer (many clients
    with a small alpha need it).
    """
    _check_common(labels, num_partitions)
    if not alpha > 0:
        raise PartitionError(f"alpha must be > 0 for the Dirichlet partitioner, got {alpha}")
    if min_partition_size * num_partitions > len(labels):
        raise PartitionError(
            f"min_partition_size={min_partition_size} x {num_partitions} partitions exceeds "
            f"the {len(labels)} samples; lower min_partition_size"
        )
    rng = np.random.default_rng(seed)
    pools = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    average = len(labels) / num_partitions
    for _ in range(max_tries):
        # A draw is counted first and materialised only if every partition is big enough.
        sizes = np.zeros(num_partitions)
        drawn, counts = [], []
        for pool in pools:
            idx = rng.permutation(pool)
            props = rng.dirichlet(np.full(num_partitions, alpha))
            if self_balancing and (sizes < average).any():
                props = np.where(sizes >= average, 0.0, props)
                props = (
                    props / props.sum() if props.sum() > 0 else np.full_like(props, 1 / len(props))
                )
            cuts = (np.cumsum(props)[:-1] * len(idx)).astype(int)
            n = np.diff(np.concatenate(([0], cuts, [len(idx)])))  # np.split's chunk sizes
            drawn.append(idx)
            counts.append(n)
            sizes += n
        if sizes.min() >= min_partition_size:
            owner = np.concatenate([np.repeat(np.arange(num_partitions), n) for n in counts])
            flat = np.concatenate(drawn)
            flat = flat[np.lexsort((flat, owner))]  # by partition, then index
            return np.split(flat, np.cumsum(sizes[:-1]).astype(int))
    raise PartitionError(
        f"no Dirichlet(alpha={alpha}) draw gave every partition >= {min_partition_size} "
        f"samples in {max_tries} tries; raise alpha or lower min_partition_size"
    )


def pathological(
    labels: np.ndarray,
    num_partitions: int,
    num_classes_per_partition: int,
    seed: int = 0,
) -> list[np.ndarray]:
    """#C=k: each partition holds ``k`` classes; a class is split evenly among its holders.

    Partition ``i`` always gets class ``i mod C`` first (so every class is held when
    ``num_partitions >= C``); the remaining ``k-1`` classes are drawn at random.
    """
    _check_common(labels, num_partitions)
    classes = np.unique(labels)
    k = num_classes_per_partition
    if not 1 <= k <= len(classes):
        raise PartitionError(
            f"num_classes_per_partition must be in 1..{len(classes)} (the number of "
            f"classes), got {k}"
        )
    rng = np.random.default_rng(seed)
    assigned: list[np.ndarray] = []
    for i in range(num_partitions):
        first = classes[i % len(classes)]
        others = rng.choice(classes[classes != first], size=k - 1, replace=False)
        assigned.append(np.concatenate([[first], others]))
    parts: list[list[np.ndarray]] = [[] for _ in range(num_partitions)]
    for c in classes:
        holders = [i for i, a in enumerate(assigned) if c in a]
        if not holders:
            continue
        idx = rng.permutation(np.flatnonzero(labels == c))
        for h, chunk in zip(holders, np.array_split(idx, len(holders)), strict=True):
            parts[h].append(chunk)
    out = [np.sort(np.concatenate(p)) for p in parts]
    if min(len(p) for p in out) == 0:
        raise PartitionError("a partition received no samples; use fewer partitions")
    return out


def shards(
    labels: np.ndarray,
    num_partitions: int,
    num_shards_per_partition: int = 2,
    seed: int = 0,
) -> list[np.ndarray]:
    """Sort by label, cut into equal shards, deal ``num_shards_per_partition`` to each."""
    _check_common(labels, num_partitions)
    n_shards = num_partitions * num_shards_per_partition
    if num_shards_per_partition < 1 or n_shards > len(labels):
        raise PartitionError(
            f"{num_partitions} partitions x {num_shards_per_partition} shards needs >= "
            f"{n_shards} samples and >= 1 shard each; got {len(labels)} samples"
        )
    rng = np.random.default_rng(seed)
    # Stable sort of a permutation: shards are label-sorted, ties in random order.
    perm = rng.permutation(len(labels))
    order = perm[np.argsort(labels[perm], kind="stable")]
    shard_size = len(labels) // n_shards
    shard_ids = rng.permutation(n_shards).reshape(num_partitions, num_shards_per_partition)
    return [
        np.sort(np.concatenate([order[s * shard_size : (s + 1) * shard_size] for s in row]))
        for row in shard_ids
    ]


def quantity(
    labels: np.ndarray,
    num_partitions: int,
    alpha: float,
    min_partition_size: int = 10,
    seed: int = 0,
) -> list[np.ndarray]:
    """Quantity skew: partition sizes ~ Dir(alpha), labels IID within each partition."""
    _check_common(labels, num_partitions)
    if not alpha > 0:
        raise PartitionError(f"alpha must be > 0 for the quantity partitioner, got {alpha}")
    n = len(labels)
    spare = n - min_partition_size * num_partitions
    if spare < 0:
        raise PartitionError(
            f"min_partition_size={min_partition_size} x {num_partitions} partitions exceeds "
            f"the {n} samples; lower min_partition_size"
        )
    rng = np.random.default_rng(seed)
    props = rng.dirichlet(np.full(num_partitions, alpha))
    sizes = min_partition_size + np.floor(props * spare).astype(int)
    sizes[np.argmax(props)] += n - sizes.sum()  # hand the rounding remainder to the largest
    perm = rng.permutation(n)
    return [np.sort(p) for p in np.split(perm, np.cumsum(sizes)[:-1])]


PARTITIONERS: dict[str, Callable[..., list[np.ndarray]]] = {
    "iid": iid,
    "dirichlet": dirichlet,
    "pathological": pathological,
    "shards": shards,
    "quantity": quantity,
}


def label_counts(labels: np.ndarray, parts: list[np.ndarray], num_classes: int) -> np.ndarray:
    """``(num_partitions, num_classes)`` matrix of label counts."""
    return np.stack([np.bincount(labels[p], minlength=num_classes) for p in parts])


def client_test_indices(
    test_labels: np.ndarray,
    class_counts: np.ndarray,
    size: int,
    seed: int = 0,
    pools: list[np.ndarray] | None = None,
) -> np.ndarray:
    """Draw ``size`` test indices whose label mix follows ``class_counts`` (one client's).

    Per-class quotas use largest-remainder rounding, capped by what the test split holds.
    ``pools``: the test indices of each class, when the caller draws for many clients.
    """
    total = class_counts.sum()
    if total == 0:
        raise PartitionError("client holds no samples; cannot build its test set")
    quota = proportional_counts(np.asarray(class_counts), size)
    rng = np.random.default_rng(seed)
    picks = []
    for c, q in enumerate(quota):
        pool = pools[c] if pools is not None else np.flatnonzero(test_labels == c)
        if q > 0:
            picks.append(rng.choice(pool, size=min(q, len(pool)), replace=False))
    return np.sort(np.concatenate(picks))
