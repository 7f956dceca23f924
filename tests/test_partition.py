import numpy as np
import pytest

from fedcore.partition import (
    PartitionError,
    client_test_indices,
    dirichlet,
    iid,
    label_counts,
    pathological,
    quantity,
    shards,
)

LABELS = np.repeat(np.arange(10), 300)  # 3000 samples, 10 balanced classes


def _check_disjoint_cover(parts, n, cover=True):
    allidx = np.concatenate(parts)
    assert len(np.unique(allidx)) == len(allidx), "partitions overlap"
    if cover:
        assert sorted(allidx.tolist()) == list(range(n)), "sizes do not add up"


CASES = [
    (iid, {}),
    (dirichlet, {"alpha": 0.1}),
    (dirichlet, {"alpha": 0.5, "min_partition_size": 50}),
    (pathological, {"num_classes_per_partition": 1}),
    (pathological, {"num_classes_per_partition": 2}),
    (quantity, {"alpha": 0.5}),
]


@pytest.mark.parametrize(("fn", "kw"), CASES)
def test_disjoint_cover_and_deterministic(fn, kw):
    a = fn(LABELS, num_partitions=10, seed=3, **kw)
    b = fn(LABELS, num_partitions=10, seed=3, **kw)
    c = fn(LABELS, num_partitions=10, seed=4, **kw)
    assert len(a) == 10
    _check_disjoint_cover(a, len(LABELS))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    if fn is not pathological or kw["num_classes_per_partition"] > 1:
        assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_pathological_label_mixes():
    one = label_counts(LABELS, pathological(LABELS, 10, 1, seed=0), 10)
    assert ((one > 0).sum(1) == 1).all()
    assert (one.argmax(1) == np.arange(10)).all() and (one.max(1) == 300).all()
    two = label_counts(LABELS, pathological(LABELS, 10, 2, seed=0), 10)
    assert ((two > 0).sum(1) == 2).all()
    assert (two.sum(0) == 300).all()  # every class fully handed out


def test_dirichlet_is_skewed_and_respects_min_size():
    parts = dirichlet(LABELS, 10, alpha=0.1, min_partition_size=20, seed=0)
    counts = label_counts(LABELS, parts, 10)
    assert min(len(p) for p in parts) >= 20
    share = counts.max(1) / counts.sum(1)
    assert share.mean() > 0.5  # alpha=0.1: each client dominated by few classes
    iid_counts = label_counts(LABELS, iid(LABELS, 10, seed=0), 10)
    assert (iid_counts.max(1) / iid_counts.sum(1)).mean() < 0.2


def test_shards():
    parts = shards(LABELS, 10, num_shards_per_partition=2, seed=0)
    _check_disjoint_cover(parts, len(LABELS))
    counts = label_counts(LABELS, parts, 10)
    assert ((counts > 0).sum(1) <= 4).all()  # two label-sorted shards: at most 2-4 classes


def test_quantity_skew_sizes_vary_labels_mixed():
    parts = quantity(LABELS, 10, alpha=0.3, min_partition_size=10, seed=0)
    sizes = np.array([len(p) for p in parts])
    assert sizes.min() >= 10 and sizes.max() > 3 * sizes.min()
    assert sizes.sum() == len(LABELS)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: dirichlet(LABELS, 10, alpha=0.0), "alpha must be > 0"),
        (lambda: dirichlet(LABELS, 10, alpha=-1), "alpha must be > 0"),
        (lambda: iid(LABELS[:5], 10), "more than the 5 samples"),
        (lambda: pathological(LABELS, 10, 11), "num_classes_per_partition must be in 1..10"),
        (lambda: dirichlet(LABELS, 10, alpha=0.5, min_partition_size=400), "exceeds"),
        (lambda: dirichlet(LABELS, 10, alpha=0.01, min_partition_size=290), "no Dirichlet"),
        (lambda: shards(LABELS[:10], 10, num_shards_per_partition=2), "needs >= 20"),
    ],
)
def test_impossible_requests_fail_clearly(call, match):
    with pytest.raises(PartitionError, match=match):
        call()


def test_client_test_set_follows_client_label_mix():
    test_labels = np.repeat(np.arange(10), 100)
    counts = np.array([50, 0, 150, 0, 0, 0, 0, 0, 0, 300])
    idx = client_test_indices(test_labels, counts, size=200, seed=0)
    got = np.bincount(test_labels[idx], minlength=10)
    assert got.tolist() == [20, 0, 60, 0, 0, 0, 0, 0, 0, 100][:10]
    assert len(np.unique(idx)) == len(idx)
    again = client_test_indices(test_labels, counts, size=200, seed=0)
    assert np.array_equal(idx, again)
