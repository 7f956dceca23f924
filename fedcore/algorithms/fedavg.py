"""FedAvg (McMahan et al., 2017): every sampled client runs SGD on its own data
(:func:`fedcore.training.train_local`); the server averages the returned models weighted by
their example counts (:func:`weighted_average`) and adds nothing to the messages.

The other algorithms are what they add to this round (see :mod:`fedcore.algorithms.base`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fedcore.algorithms.base import Algorithm
from fedcore.types import StateDict


class FedAvg(Algorithm):
    """Plain FedAvg: the weighted average is the new global model."""

    name = "fedavg"


def weighted_average(states: Sequence[StateDict], weights: Sequence[float]) -> StateDict:
    """Average state dicts with weights ``w_k / sum(w)`` (FedAvg with ``w_k = n_k``).

    Floating tensors are averaged in float64 and cast back to their dtype; integer
    buffers (BatchNorm's ``num_batches_tracked``) get the rounded weighted average.
    Keys, shapes and dtypes must agree across states.
    """
    if not states:
        raise ValueError("cannot average zero models")
    if len(states) != len(weights):
        raise ValueError(f"{len(states)} states but {len(weights)} weights")
    total = float(sum(weights))
    if not total > 0 or any(w < 0 for w in weights):
        raise ValueError(f"weights must be non-negative with a positive sum, got {weights}")
    keys = list(states[0].keys())
    out: StateDict = {}
    for key in keys:
        ref = states[0][key]
        acc = torch.zeros(ref.shape, dtype=torch.float64)
        for s, w in zip(states, weights, strict=True):
            t = s[key]
            if t.shape != ref.shape:
                raise ValueError(
                    f"shape mismatch for {key}: {tuple(t.shape)} vs {tuple(ref.shape)}"
                )
            acc += t.detach().cpu().to(torch.float64) * (w / total)
        out[key] = acc.round().to(ref.dtype) if not ref.is_floating_point() else acc.to(ref.dtype)
    return out
