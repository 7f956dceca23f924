"""SCAFFOLD (Karimireddy et al., 2020): FedAvg plus server and client control variates.

The server sends ``c`` as the ArrayRecord ``scaffold-c`` next to the model; clients keep
``c_i`` in their persistent state, correct every local gradient by ``c - c_i`` (see
``train_local``'s ``grad_correction``) and answer with ``scaffold-dc``. After ``K``
local steps with learning rate ``lr`` a client updates its control variate with option II
of the paper, ``c_i+ = c_i - c + (x - y) / (K * lr)``, and
sends ``delta_c = c_i+ - c_i``; the server moves ``c`` by ``|S| / N`` times the mean delta.
With SGD momentum ``beta`` a step moves about ``lr / (1 - beta)`` times the gradient, so the
estimate divides by ``K * lr / (1 - beta)``: without this, momentum 0.9 inflates the control
variates tenfold.
Control variates cover trainable parameters only (not BatchNorm buffers).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from fedcore.algorithms.base import (
    Algorithm,
    ClientHook,
    ClientRound,
    LocalPlan,
    Received,
    ServerStep,
    State,
)
from fedcore.protocol import SCAFFOLD_C, SCAFFOLD_DC
from fedcore.training import TrainStats, sgd_reach
from fedcore.types import StateDict


def zeros_like_params(params: StateDict) -> StateDict:
    """A zero control variate for every parameter."""
    return {k: torch.zeros_like(v) for k, v in params.items()}


def correction(c: StateDict, c_i: StateDict, names: Sequence[str]) -> list[torch.Tensor]:
    """Per-parameter gradient correction ``c - c_i`` in ``names`` order."""
    return [c[n] - c_i[n] for n in names]


def client_control_update(
    c: StateDict,
    c_i: StateDict,
    x: StateDict,
    y: StateDict,
    steps: int,
    lr: float,
    momentum: float = 0.0,
) -> tuple[StateDict, StateDict]:
    """Option II: returns the new client variate ``c_i+`` and ``delta_c = c_i+ - c_i``."""
    if steps < 1 or lr <= 0 or not 0 <= momentum < 1:
        raise ValueError(
            f"need steps >= 1, lr > 0, 0 <= momentum < 1; got {steps}, {lr}, {momentum}"
        )
    effective = sgd_reach(steps, lr, momentum)
    new = {n: c_i[n] - c[n] + (x[n] - y[n]) / effective for n in c_i}
    return new, {n: new[n] - c_i[n] for n in c_i}


def server_control_update(c: StateDict, deltas: Sequence[StateDict], num_clients: int) -> StateDict:
    """``c + (|S| / N) * mean_i(delta_c_i)`` = ``c + sum_i(delta_c_i) / N``."""
    if not deltas:
        return c
    return {n: c[n] + sum(d[n] for d in deltas) / num_clients for n in c}


CLIENT_VARIATE = "scaffold-ci"  # the client's persistent state key for c_i


class ScaffoldHook(ClientHook):
    """Corrects gradients by ``c - c_i``; after training updates ``c_i`` and sends its change."""

    def before(self, rnd: ClientRound, plan: LocalPlan) -> None:
        self.c = rnd.arrays[SCAFFOLD_C]
        self.c_i = rnd.state.get(CLIENT_VARIATE) or zeros_like_params(self.c)
        names = [n for n, _ in rnd.model.named_parameters()]
        plan.grad_corrections.append(correction(self.c, self.c_i, names))
        self.x0 = {n: p.detach().cpu().clone() for n, p in rnd.model.named_parameters()}

    def after(self, rnd: ClientRound, stats: TrainStats, plan: LocalPlan) -> None:
        y = {n: p.detach().cpu() for n, p in rnd.model.named_parameters()}
        t = rnd.train
        c_i_new, delta = client_control_update(
            self.c, self.c_i, self.x0, y, max(stats.steps, 1), t.lr, t.momentum
        )
        rnd.state[CLIENT_VARIATE] = c_i_new
        plan.arrays[SCAFFOLD_DC] = delta


class Scaffold(Algorithm):
    """FedAvg of the models; the server variate ``c`` (its state) moves by the clients'
    deltas."""

    name = "scaffold"
    averages_only = False  # needs each client's control-variate change

    @classmethod
    def client_hook(cls, config: dict[str, Any], arrays: dict) -> ClientHook | None:
        return ScaffoldHook() if SCAFFOLD_C in arrays else None

    def init(self, global_state: StateDict) -> State:
        """``c`` = 0 for every trainable parameter."""
        return {"c": zeros_like_params({n: global_state[n] for n in self.setup.param_names})}

    def train_arrays(self, state: State, server_round: int) -> dict[str, StateDict]:
        return {SCAFFOLD_C: state["c"]}

    def reply_arrays(self, state: State) -> dict[str, StateDict]:
        return {SCAFFOLD_DC: state["c"]}

    def apply(self, state: State, got: Received) -> tuple[State, ServerStep]:
        deltas = [r.arrays[SCAFFOLD_DC] for r in got.replies]
        c = server_control_update(state["c"], deltas, self.setup.run.num_clients)
        return {"c": c}, ServerStep(got.averaged)
