"""SCAFFOLD's control-variate updates (Karimireddy et al., 2020), transport-free.

Clients correct every local gradient by ``c - c_i`` (see ``train_local``'s
``grad_correction``); after ``K`` local steps with learning rate ``lr`` a client updates its
control variate with option II of the paper, ``c_i+ = c_i - c + (x - y) / (K * lr)``, and
sends ``delta_c = c_i+ - c_i``; the server moves ``c`` by ``|S| / N`` times the mean delta.
With SGD momentum ``beta`` a step moves about ``lr / (1 - beta)`` times the gradient, so the
estimate divides by ``K * lr / (1 - beta)``: without this, momentum 0.9 inflates the control
variates tenfold (the yardstick's #C=1 run collapsed to chance that way).
Control variates cover trainable parameters only (not BatchNorm buffers).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

Tensors = dict[str, torch.Tensor]


def zeros_like_params(params: Tensors) -> Tensors:
    """A zero control variate for every parameter."""
    return {k: torch.zeros_like(v) for k, v in params.items()}


def correction(c: Tensors, c_i: Tensors, names: Sequence[str]) -> list[torch.Tensor]:
    """Per-parameter gradient correction ``c - c_i`` in ``names`` order."""
    return [c[n] - c_i[n] for n in names]


def client_control_update(
    c: Tensors, c_i: Tensors, x: Tensors, y: Tensors, steps: int, lr: float, momentum: float = 0.0
) -> tuple[Tensors, Tensors]:
    """Option II: returns the new client variate ``c_i+`` and ``delta_c = c_i+ - c_i``."""
    if steps < 1 or lr <= 0 or not 0 <= momentum < 1:
        raise ValueError(
            f"need steps >= 1, lr > 0, 0 <= momentum < 1; got {steps}, {lr}, {momentum}"
        )
    effective = steps * lr / (1.0 - momentum)
    new = {n: c_i[n] - c[n] + (x[n] - y[n]) / effective for n in c_i}
    return new, {n: new[n] - c_i[n] for n in c_i}


def server_control_update(c: Tensors, deltas: Sequence[Tensors], num_clients: int) -> Tensors:
    """``c + (|S| / N) * mean_i(delta_c_i)`` = ``c + sum_i(delta_c_i) / N``."""
    if not deltas:
        return c
    return {n: c[n] + sum(d[n] for d in deltas) / num_clients for n in c}
