"""What the robust aggregators share: each replaces FedAvg's example-weighted average by a
rule that a minority of poisoned but well-formed client models (and inflated example
counts) cannot drag far. They run first in a composition (``zdas+scaffold+trimmedmean``:
ZDAS fine-tunes the robust aggregate), need each client's model (not under SecAgg+) and
keep no state. The rules themselves are in :mod:`fedcore.robust`.
"""

from __future__ import annotations

from collections.abc import Sequence

from fedcore.algorithms.base import Algorithm, Received, ServerStep, State
from fedcore.protocol import TrainReply
from fedcore.types import StateDict


class RobustAverage(Algorithm):
    """An aggregation rule in place of the average; subclasses give :meth:`combine`."""

    averages_only = False  # needs each client's model
    replaces_average = True

    def combine(self, replies: Sequence[TrainReply]) -> tuple[StateDict, dict[str, float]]:
        """The aggregate of the replies' models, and diagnostics."""
        raise NotImplementedError

    def apply(self, state: State, got: Received) -> tuple[State, ServerStep]:
        combined, metrics = self.combine(got.replies)
        return state, ServerStep(combined, metrics)
