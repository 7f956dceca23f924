"""q-FedAvg (Li, Sanjabi, Beirami, Smith, ICLR 2020, "Fair Resource Allocation in Federated
Learning"): the q-FFL objective ``sum_k F_k^(q+1) / (q+1)``, solved by weighting each
client's update by its loss to the power ``q``, so clients the global model serves badly
pull harder. ``q = 0`` is an unweighted average of the client models.

Each client reports ``qffl-loss``, its training loss ``F_k`` under the received global model
``w`` (measured before local training), and ``qffl-step``, how far its local training moves
per unit of gradient: ``K lr / (1 - momentum)`` after ``K`` SGD steps. The paper's
``L = 1 / lr`` assumes one momentum-free step; with ``L = 1 / mean_k(qffl-step)`` instead
(one ``L`` per round, so that ``q = 0`` stays the plain mean of the client models),
``dw_k = L (w - w_k)`` stays an estimate of the client's gradient, as the update needs
(SCAFFOLD's control variates divide by the same quantity). Then
``h_k = q F_k^(q-1) ||dw_k||^2 + L F_k^q`` and the new model is
``w - sum_k F_k^q dw_k / sum_k h_k``. The update covers trainable parameters; BatchNorm's
running statistics keep FedAvg's example-weighted average. A reply whose loss or step is
not a finite positive number is left out of the step (counted in ``qffl-refused``).
q-FedAvg replaces the average, so in a composition it runs first (``zda+qfedavg``: ZDAS
fine-tunes the q-FFL model).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from fedcore.algorithms.base import (
    Algorithm,
    ClientHook,
    ClientRound,
    LocalPlan,
    Received,
    ServerSetup,
    ServerStep,
    State,
    own_loss,
)
from fedcore.protocol import QFFL_ASK, QFFL_LOSS, QFFL_STEP
from fedcore.training import TrainStats, sgd_reach
from fedcore.types import StateDict

EPS = 1e-10  # keeps F_k^(q-1) finite for a client with zero loss


@dataclass(frozen=True)
class QFedAvgConfig:
    """The fairness exponent ``q``."""

    q: float = 1.0  # 0: unweighted average; larger: high-loss clients weigh more

    def problems(self, prefix: str) -> list[str]:
        return [] if self.q >= 0 else [f"{prefix}q: must be >= 0, got {self.q}"]


def qffl_update(
    global_state: StateDict,
    client_states: Sequence[StateDict],
    losses: Sequence[float],
    steps: Sequence[float],
    names: Sequence[str],
    q: float,
) -> StateDict:
    """The q-FFL step for the tensors ``names`` (float64 sums, cast back), with
    ``L = 1 / mean(steps)``."""
    num = {n: torch.zeros(global_state[n].shape, dtype=torch.float64) for n in names}
    h_sum = 0.0
    lipschitz = len(steps) / float(sum(steps))
    for state, loss in zip(client_states, losses, strict=True):
        f = max(float(loss), EPS)
        dw = {n: lipschitz * (global_state[n].double() - state[n].double()) for n in names}
        sq = float(sum(float(d.pow(2).sum()) for d in dw.values()))
        for n in names:
            num[n] += f**q * dw[n]
        h_sum += q * f ** (q - 1) * sq + lipschitz * f**q
    return {n: (global_state[n].double() - num[n] / h_sum).to(global_state[n].dtype) for n in names}


class LossHook(ClientHook):
    """Reports the received model's mean cross-entropy on this client's own samples, and
    after training the effective step size of its local SGD."""

    def before(self, rnd: ClientRound, plan: LocalPlan) -> None:
        plan.metrics[QFFL_LOSS] = own_loss(rnd, plan)

    def after(self, rnd: ClientRound, stats: TrainStats, plan: LocalPlan) -> None:
        t = rnd.train
        plan.metrics[QFFL_STEP] = sgd_reach(max(stats.steps, 1), t.lr, t.momentum)


class QFedAvg(Algorithm):
    """The q-FFL step in place of FedAvg's average; asks every client for its loss."""

    name = "qfedavg"
    section = "qfedavg"
    Config = QFedAvgConfig
    averages_only = False  # weights each client's model by its own loss
    replaces_average = True

    def __init__(self, setup: ServerSetup[QFedAvgConfig]) -> None:
        super().__init__(setup)
        self.q = setup.cfg.q

    @classmethod
    def client_hook(cls, config: dict[str, Any], arrays: dict) -> ClientHook | None:
        return LossHook() if config.get(QFFL_ASK) else None

    def train_config(self, server_round: int) -> dict[str, Any]:
        return {QFFL_ASK: True}

    def apply(self, state: State, got: Received) -> tuple[State, ServerStep]:
        usable = [r for r in got.replies if _usable(r.metrics)]
        refused = {"qffl-refused": float(len(got.replies) - len(usable))}
        if not usable:
            return state, ServerStep(got.averaged, refused)
        losses = [float(r.metrics[QFFL_LOSS]) for r in usable]
        steps = [float(r.metrics[QFFL_STEP]) for r in usable]
        states = [r.state for r in usable]
        params = qffl_update(got.sent, states, losses, steps, self.setup.param_names, self.q)
        metrics = {"qffl-loss-max": max(losses), "qffl-loss-min": min(losses)} | refused
        return state, ServerStep(got.averaged | params, metrics)


def _usable(metrics: dict[str, Any]) -> bool:
    """Whether a reply carries a finite loss >= 0 and a finite step > 0."""
    loss, step = metrics.get(QFFL_LOSS), metrics.get(QFFL_STEP)
    numbers = all(isinstance(v, int | float) and math.isfinite(v) for v in (loss, step))
    return numbers and float(loss) >= 0 and float(step) > 0  # type: ignore[arg-type]
