"""Robust aggregation: combine client models so that a minority of poisoned but well-formed
updates (finite, right keys and shapes) cannot drag the global model far. The coordinate-wise
median and trimmed mean (Yin et al., ICML 2018) act per coordinate; (Multi-)Krum (Blanchard
et al., NeurIPS 2017) keeps the models closest to their neighbours; count clipping bounds the
weight of a client whose claimed example count can't be trusted.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Sequence

import torch

from fedcore.types import StateDict


def _keys(states: Sequence[StateDict]) -> list[str]:
    """The keys shared by all states; ValueError for zero states or differing keys."""
    if not states:
        raise ValueError("cannot aggregate zero models")
    keys = list(states[0])
    for i, state in enumerate(states[1:], start=1):
        differing = sorted(set(state) ^ set(keys))
        if differing:
            raise ValueError(f"state {i} and state 0 disagree on key {differing[0]!r}")
    return keys


def _stack(states: Sequence[StateDict], key: str) -> torch.Tensor:
    """Tensor ``key`` of every state stacked along dim 0, in float64 on CPU."""
    ref = states[0][key]
    for state in states:
        if state[key].shape != ref.shape:
            raise ValueError(
                f"shape mismatch for {key}: {tuple(state[key].shape)} vs {tuple(ref.shape)}"
            )
    return torch.stack([state[key].detach().cpu().to(torch.float64) for state in states])


def _median(stacked: torch.Tensor) -> torch.Tensor:
    """Median along dim 0; the mean of the two middle values for an even count."""
    ordered = stacked.sort(dim=0).values
    n = ordered.shape[0]
    return (ordered[(n - 1) // 2] + ordered[n // 2]) / 2


def _per_key(
    states: Sequence[StateDict], reduce: Callable[[torch.Tensor], torch.Tensor]
) -> StateDict:
    """Reduce floating tensors with ``reduce``, integer ones with the rounded median."""
    out: StateDict = {}
    for key in _keys(states):
        ref = states[0][key]
        stacked = _stack(states, key)
        if ref.is_floating_point():
            out[key] = reduce(stacked).to(ref.dtype)
        else:
            out[key] = _median(stacked).round().to(ref.dtype)
    return out


def coordinate_median(states: Sequence[StateDict]) -> StateDict:
    """Coordinate-wise median of the states (the midpoint of the two middles for even n)."""
    return _per_key(states, _median)


def trimmed_mean(states: Sequence[StateDict], trim: float) -> StateDict:
    """Per coordinate, drop the ``floor(trim * n)`` largest and smallest values and average
    the rest; ``trim = 0`` is the plain mean."""
    if not 0 <= trim < 0.5:
        raise ValueError(f"trim must be in [0, 0.5), got {trim}")
    n = len(states)
    k = int(trim * n)
    if n and 2 * k >= n:
        raise ValueError(f"trim={trim} drops 2*{k} of {n} values, leaving none")
    return _per_key(states, lambda stacked: stacked.sort(dim=0).values[k : n - k].mean(dim=0))


def _flatten(states: Sequence[StateDict], names: Iterable[str]) -> torch.Tensor:
    """One float64 row per state: the tensors named in ``names``, flattened and joined."""
    keys = set(_keys(states))
    names = list(names)
    if not names:
        raise ValueError("Krum needs at least one parameter name")
    for name in names:
        if name not in keys:
            raise ValueError(f"parameter {name!r} is not in the states")
    return torch.cat([_stack(states, name).reshape(len(states), -1) for name in names], dim=1)


def krum_scores(
    states: Sequence[StateDict], num_byzantine: int, names: Iterable[str]
) -> torch.Tensor:
    """Krum score of each state: the sum of squared Euclidean distances (over ``names``) to
    its ``n - f - 2`` nearest other states. Needs ``n >= 2f + 3``."""
    n, f = len(states), num_byzantine
    _keys(states)
    if f < 0 or n < 2 * f + 3:
        raise ValueError(f"Krum needs n >= 2f + 3 states and f >= 0, got n={n}, f={f}")
    points = _flatten(states, names)
    distances = torch.stack([((points - point) ** 2).sum(dim=1) for point in points])
    distances.fill_diagonal_(float("inf"))
    return distances.sort(dim=1).values[:, : n - f - 2].sum(dim=1)


def _check_weights(weights: Sequence[float], picked: Sequence[int]) -> None:
    """ValueError unless the weights are non-negative and the picked ones sum above zero."""
    if any(w < 0 for w in weights) or not sum(weights[i] for i in picked) > 0:
        raise ValueError(f"weights must be non-negative with a positive sum, got {weights}")


def multi_krum(
    states: Sequence[StateDict],
    num_byzantine: int,
    keep: int,
    names: Iterable[str],
    weights: Sequence[float],
) -> tuple[StateDict, list[int]]:
    """Average (weighted by ``weights``) the ``keep`` states with the lowest Krum scores
    (``keep = 1`` is Krum); also return the picked indices, ascending. Ties go to the lower
    index. Integer buffers get the rounded median of all states."""
    n = len(states)
    if len(weights) != n:
        raise ValueError(f"{n} states but {len(weights)} weights")
    scores = krum_scores(states, num_byzantine, names).tolist()
    if not 1 <= keep <= n - num_byzantine:
        raise ValueError(f"keep must be in [1, n - f] = [1, {n - num_byzantine}], got {keep}")
    picked = sorted(sorted(range(n), key=lambda i: (scores[i], i))[:keep])
    _check_weights(weights, picked)
    w = torch.tensor([float(weights[i]) for i in picked], dtype=torch.float64)
    w = w / w.sum()

    def average(stacked: torch.Tensor) -> torch.Tensor:
        chosen = stacked[picked]
        return (chosen * w.reshape(-1, *([1] * (chosen.dim() - 1)))).sum(dim=0)

    return _per_key(states, average), picked


def clip_counts(counts: Sequence[int | float], cap: float) -> list[float]:
    """Each sample count capped at ``cap`` (for counts a client could inflate)."""
    if not cap > 0:
        raise ValueError(f"cap must be positive, got {cap}")
    return [min(float(c), float(cap)) for c in counts]


def median_cap(counts: Sequence[int | float], factor: float) -> float:
    """A count cap: ``factor`` times the median count."""
    if not counts:
        raise ValueError("cannot take the median of zero counts")
    if not factor > 0:
        raise ValueError(f"factor must be positive, got {factor}")
    return float(factor) * float(statistics.median(counts))
