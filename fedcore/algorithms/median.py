"""Coordinate-wise median (Yin, Chen, Ramchandran, Bartlett, ICML 2018): every coordinate of
the global model is the median of the client models' values, so fewer than half of the
replies, however poisoned, cannot move it outside the honest values' range. Example counts
are ignored (an inflated count buys nothing). No settings.
"""

from __future__ import annotations

from collections.abc import Sequence

from fedcore.algorithms.robust import RobustAverage
from fedcore.protocol import TrainReply
from fedcore.robust import coordinate_median
from fedcore.types import StateDict


class Median(RobustAverage):
    """The coordinate-wise median of the client models."""

    name = "median"

    def combine(self, replies: Sequence[TrainReply]) -> tuple[StateDict, dict[str, float]]:
        return coordinate_median([r.state for r in replies]), {}
