"""Coordinate-wise trimmed mean (Yin, Chen, Ramchandran, Bartlett, ICML 2018): per
coordinate, the largest and smallest ``floor(trim * n)`` of the ``n`` client values are
dropped and the rest averaged (unweighted: an inflated example count buys nothing). With
``trim`` at least the share of attackers among a round's replies, none of their values
survives at a coordinate where they are extreme.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fedcore.algorithms.base import ServerSetup
from fedcore.algorithms.robust import RobustAverage
from fedcore.protocol import TrainReply
from fedcore.robust import trimmed_mean
from fedcore.types import StateDict


@dataclass(frozen=True)
class TrimmedMeanConfig:
    """How much to trim."""

    trim: float = 0.2  # share of each round's replies dropped at each end, per coordinate

    def problems(self, prefix: str) -> list[str]:
        ok = 0 <= self.trim < 0.5
        return [] if ok else [f"{prefix}trim: must be in [0, 0.5), got {self.trim}"]


class TrimmedMean(RobustAverage):
    """The coordinate-wise trimmed mean of the client models."""

    name = "trimmedmean"
    section = "trimmedmean"
    Config = TrimmedMeanConfig

    def __init__(self, setup: ServerSetup[TrimmedMeanConfig]) -> None:
        super().__init__(setup)
        self.trim: float = setup.cfg.trim

    def combine(self, replies: Sequence[TrainReply]) -> tuple[StateDict, dict[str, float]]:
        return trimmed_mean([r.state for r in replies], self.trim), {}
