"""FedLC (Zhang et al., ICML 2022, "Federated Learning with Label Distribution Skew via
Logits Calibration"): FedAvg whose clients compute their cross-entropy on calibrated logits
``z_c - tau * n_c^(-1/4)``, ``n_c`` the client's count of class ``c``. Rare classes' logits
are lowered in the loss, so local training pushes them down less; an absent class
(``n_c`` clamped to ``1e-8``) gets almost no gradient. The counts describe the client's own
data, so only its own samples are calibrated: samples another hook adds (ZDAC's synthetic
ones, of exactly the classes the client lacks) keep the plain cross-entropy. Client-side
only: ``tau`` travels in the train ConfigRecord as ``fedlc.tau``; nothing else is sent or
returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fedcore.algorithms.base import Algorithm, ClientHook, ClientRound, LocalPlan, ServerSetup
from fedcore.protocol import FEDLC_TAU
from fedcore.training import REAL

ABSENT = 1e-8  # the count an absent class is calibrated with


@dataclass(frozen=True)
class FedLCConfig:
    """The calibration strength ``tau``."""

    tau: float = 1.0  # own samples' logits shift by -tau * n_c^(-1/4) (0: plain CE)

    def problems(self, prefix: str) -> list[str]:
        return [] if self.tau >= 0 else [f"{prefix}tau: must be >= 0, got {self.tau}"]


def calibration(label_counts: np.ndarray, tau: float) -> torch.Tensor:
    """The per-class shift ``tau * n_c^(-1/4)`` subtracted from the logits."""
    counts = torch.as_tensor(np.asarray(label_counts), dtype=torch.float32).clamp_min(ABSENT)
    return tau * counts.pow(-0.25)


class CalibrationHook(ClientHook):
    """Subtracts the client's calibration from the logits its own samples' cross-entropy
    sees."""

    def __init__(self, tau: float) -> None:
        self.tau = tau

    def before(self, rnd: ClientRound, plan: LocalPlan) -> None:
        shift = calibration(rnd.label_counts, self.tau).to(rnd.device)

        def adjust(logits: torch.Tensor, origin: torch.Tensor) -> torch.Tensor:
            own = (origin == REAL).to(logits.dtype).unsqueeze(1)
            return logits - own * shift

        plan.logit_adjust.append(adjust)


class FedLC(Algorithm):
    """FedAvg on the server; sends ``fedlc.tau`` with every training message."""

    name = "fedlc"
    section = "fedlc"
    Config = FedLCConfig

    def __init__(self, setup: ServerSetup[FedLCConfig]) -> None:
        super().__init__(setup)
        self.tau = setup.cfg.tau

    @classmethod
    def client_hook(cls, config: dict[str, Any], arrays: dict) -> ClientHook | None:
        tau = float(config.get(FEDLC_TAU, 0.0))
        return CalibrationHook(tau) if tau > 0 else None

    def train_config(self, server_round: int) -> dict[str, Any]:
        return {FEDLC_TAU: self.tau}
