"""Fairness summaries of per-client accuracies."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def tail_mean(values: Sequence[float] | np.ndarray, fraction: float, worst: bool) -> float:
    """Mean of the worst (lowest) or best ``fraction`` of values, at least one value."""
    v = np.sort(np.asarray(values, dtype=float))
    k = max(1, math.ceil(fraction * len(v)))
    return float(v[:k].mean() if worst else v[-k:].mean())


def fairness_summary(client_accuracies: Sequence[float]) -> dict[str, float]:
    """Mean, population std, worst-10% and best-10% mean, min and max of client accuracies."""
    if len(client_accuracies) == 0:
        raise ValueError("no client accuracies to summarise")
    v = np.asarray(client_accuracies, dtype=float)
    return {
        "client_acc_mean": float(v.mean()),
        "client_acc_std": float(v.std()),
        "client_acc_worst10": tail_mean(v, 0.1, worst=True),
        "client_acc_best10": tail_mean(v, 0.1, worst=False),
        "client_acc_min": float(v.min()),
        "client_acc_max": float(v.max()),
    }
