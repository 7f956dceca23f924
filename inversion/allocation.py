"""How many synthetic samples of each class to make.

* ``uniform``: the budget split equally over all classes.
* ``complement``: only classes the client lacks relative to its largest class, each in
  proportion to its deficit ``max_count - count_c``, so that real + synthetic approaches a
  uniform class mix (fully when the budget covers the whole deficit; a larger budget is
  capped at the deficit, and a balanced client gets nothing).

:func:`allocate` takes the mode, the client's real label ``counts`` and one ``budget``: a
sample count when ``budget >= 1`` (rounded), else a ratio of the client's local data
(``0 <= budget < 1``: ``round(budget * counts.sum())`` samples); a negative budget is an
error (:func:`budget_size`). Counts are split by largest remainder
(:func:`proportional_counts`), and :func:`labels_for` expands them into a label vector.
"""

from __future__ import annotations

import numpy as np

ALLOCATIONS = ("uniform", "complement")


def proportional_counts(shares: np.ndarray, total: int) -> np.ndarray:
    """Integer counts summing to ``total`` in proportion to ``shares`` (ties to lower class)."""
    if total <= 0 or shares.sum() <= 0:
        return np.zeros(len(shares), dtype=int)
    exact = shares / shares.sum() * total
    out = np.floor(exact).astype(int)
    rest = total - out.sum()
    out[np.argsort(-(exact - out), kind="stable")[:rest]] += 1
    return out


def budget_size(budget: float, num_local: int) -> int:
    """A budget as a sample count: ``budget`` itself if >= 1, else ``budget * num_local``."""
    if budget < 0:
        raise ValueError(f"synthetic budget must be >= 0, got {budget}")
    return round(budget) if budget >= 1 else round(budget * num_local)


def allocate(mode: str, counts: np.ndarray, budget: float) -> np.ndarray:
    """Synthetic samples per class for a client with real label ``counts``."""
    counts = np.asarray(counts, dtype=np.int64)
    if mode not in ALLOCATIONS:
        raise ValueError(f"unknown allocation {mode!r}; choose one of {ALLOCATIONS}")
    total = budget_size(budget, int(counts.sum()))
    if mode == "uniform":
        return proportional_counts(np.ones(len(counts)), total)
    deficit = counts.max() - counts
    if deficit.sum() == 0:
        return np.zeros(len(counts), dtype=int)
    total = min(total, int(deficit.sum()))  # never overshoot a uniform mix
    return proportional_counts(deficit.astype(float), total)


def labels_for(per_class: np.ndarray) -> np.ndarray:
    """Expand per-class counts into a label vector, classes interleaved (balanced batches)."""
    per_class = np.asarray(per_class, dtype=int)
    order = []
    remaining = per_class.copy()
    while remaining.sum() > 0:
        live = np.flatnonzero(remaining > 0)
        order.extend(live.tolist())
        remaining[live] -= 1
    return np.asarray(order, dtype=np.int64)
