"""FedProx (Li et al., 2020): FedAvg whose clients add ``mu/2 * ||w - w_global||^2`` to
their loss. ``mu`` travels in the train ConfigRecord as ``proximal-mu`` (Flower's name).
It composes with any algorithm by name (``algorithm = "zda+fedprox"``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from fedcore.algorithms.base import (
    Algorithm,
    ClientHook,
    ClientRound,
    LocalPlan,
    RunContext,
    ServerSetup,
)
from fedcore.protocol import PROXIMAL_MU


@dataclass(frozen=True)
class FedProxConfig:
    """FedProx's proximal weight."""

    mu: float = 0.01  # clients add mu/2 * ||w - w_global||^2 to their loss (> 0)

    def problems(self, prefix: str) -> list[str]:
        return [] if self.mu >= 0 else [f"{prefix}mu: must be >= 0, got {self.mu}"]


def proximal_term(model: nn.Module, anchor: list[torch.Tensor]) -> torch.Tensor:
    """``0.5 * ||w - w_global||^2`` over trainable parameters (scaled by mu outside)."""
    pairs = zip(model.parameters(), anchor, strict=True)
    return 0.5 * sum(((p - a).pow(2).sum() for p, a in pairs), torch.tensor(0.0))


class ProximalHook(ClientHook):
    """Adds ``mu * proximal_term`` towards the received weights to every batch loss."""

    def __init__(self, mu: float) -> None:
        self.mu = mu

    def before(self, rnd: ClientRound, plan: LocalPlan) -> None:
        anchor = [p.detach().clone() for p in rnd.model.parameters()]
        mu = self.mu
        plan.regularizers.append(lambda batch: mu * proximal_term(batch.model, anchor))


class FedProx(Algorithm):
    """FedAvg on the server; sends ``proximal-mu`` with every training message."""

    name = "fedprox"
    section = "fedprox"
    Config = FedProxConfig

    def __init__(self, setup: ServerSetup[FedProxConfig]) -> None:
        super().__init__(setup)
        self.mu = setup.cfg.mu
        if problems := self.run_problems(setup.cfg, setup.run):
            raise ValueError(problems[0])

    @classmethod
    def run_problems(cls, cfg: FedProxConfig, run: RunContext) -> list[str]:
        if cfg.mu > 0:
            return []
        return [f"fedprox.mu: FedProx needs mu > 0, got {cfg.mu} (mu = 0 is FedAvg)"]

    @classmethod
    def client_hook(cls, config: dict[str, Any], arrays: dict) -> ClientHook | None:
        mu = float(config.get(PROXIMAL_MU, 0.0))
        return ProximalHook(mu) if mu > 0 else None

    def train_config(self, server_round: int) -> dict[str, Any]:
        return {PROXIMAL_MU: self.mu}
