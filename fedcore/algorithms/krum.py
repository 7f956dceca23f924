"""Multi-Krum (Blanchard, El Mhamdi, Guerraoui, Stainer, NeurIPS 2017): score each client
model by the summed squared distance (over the trainable parameters) to its ``n - f - 2``
nearest others, keep the ``m`` best-scored and average them, weighted by example counts
clipped at ``count_cap`` times the round's median count (a client cannot buy weight by
inflating its count). ``keep = 1`` is Krum; ``keep = 0`` keeps ``n - f``. A round with
too few replies for ``f`` (Krum needs ``n >= 2f + 3``) assumes the largest ``f`` it can.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fedcore.algorithms.base import ServerSetup
from fedcore.algorithms.robust import RobustAverage
from fedcore.protocol import TrainReply
from fedcore.robust import clip_counts, median_cap, multi_krum
from fedcore.types import StateDict


@dataclass(frozen=True)
class KrumConfig:
    """The assumed attackers per round, how many models to keep, the count cap."""

    byzantine: int = 2  # f: poisoned replies assumed per round
    keep: int = 0  # m: models averaged (1: Krum; 0: n - f, Multi-Krum)
    count_cap: float = 2.0  # weights: counts clipped at this x the round's median count

    def problems(self, prefix: str) -> list[str]:
        checks = [
            (self.byzantine >= 0, f"byzantine: must be >= 0, got {self.byzantine}"),
            (self.keep >= 0, f"keep: must be >= 0 (0: n - byzantine), got {self.keep}"),
            (self.count_cap > 0, f"count_cap: must be > 0, got {self.count_cap}"),
        ]
        return [prefix + msg for ok, msg in checks if not ok]


class Krum(RobustAverage):
    """Multi-Krum over the client models."""

    name = "krum"
    section = "krum"
    Config = KrumConfig

    def __init__(self, setup: ServerSetup[KrumConfig]) -> None:
        super().__init__(setup)
        self.cfg = setup.cfg

    def combine(self, replies: Sequence[TrainReply]) -> tuple[StateDict, dict[str, float]]:
        n = len(replies)
        f = max(0, min(self.cfg.byzantine, (n - 3) // 2))
        keep = min(self.cfg.keep or n - f, n - f)
        counts = [float(r.num_examples) for r in replies]
        weights = clip_counts(counts, median_cap(counts, self.cfg.count_cap))
        names = self.setup.param_names
        state, picked = multi_krum([r.state for r in replies], f, keep, names, weights)
        dropped = [r.partition_id for i, r in enumerate(replies) if i not in picked]
        return state, {"krum-byzantine": float(f), "krum-dropped": float(len(dropped))}
