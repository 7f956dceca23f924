"""Amortised inversion: a pool of synthetic samples refined across rounds.

Instead of inverting from noise every round, each side keeps its last samples and refines
them for ``warm_steps`` against the new model. A pool older than ``max_age`` rounds is
discarded (stale), and classes the pool lacks start from noise. The pool serialises to and
from plain tensors so a client can keep it in Flower's ``Context.state``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from inversion.engine import InversionConfig, InversionResult, invert


@dataclass
class SyntheticPool:
    """Synthetic inputs ``x`` with labels ``y``, last refined in round ``round``."""

    x: torch.Tensor | None = None
    y: torch.Tensor | None = None
    round: int = -1

    def is_empty(self) -> bool:
        return self.y is None or self.y.numel() == 0

    def init_for(
        self,
        labels: torch.Tensor,
        input_shape: tuple[int, ...],
        server_round: int,
        max_age: int,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, float]:
        """Starting inputs for ``labels``: pool samples of the same class where available
        (fresh ones first used), N(0, 1) noise elsewhere. Returns the inputs and the warm
        fraction."""
        init = torch.randn((labels.numel(), *input_shape), generator=generator)
        if self.is_empty() or server_round - self.round > max_age:
            return init, 0.0
        assert self.x is not None and self.y is not None
        warm = 0
        for c in labels.unique().tolist():
            want = torch.nonzero(labels == c).flatten()
            have = torch.nonzero(self.y == c).flatten()
            k = min(len(want), len(have))
            if k:
                init[want[:k]] = self.x[have[:k]]
                warm += k
        return init, warm / max(labels.numel(), 1)

    def update(self, x: torch.Tensor, y: torch.Tensor, server_round: int) -> None:
        """Replace the pool with freshly refined samples."""
        self.x, self.y, self.round = x.detach().cpu(), y.detach().cpu().long(), server_round

    def state(self) -> dict[str, torch.Tensor]:
        """Plain tensors (for Context.state / checkpoints)."""
        if self.is_empty():
            return {}
        return {"x": self.x, "y": self.y, "round": torch.tensor(self.round)}  # type: ignore[dict-item]

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor]) -> SyntheticPool:
        if not state:
            return cls()
        return cls(state["x"], state["y"].long(), int(state["round"]))


def invert_with_pool(
    model: nn.Module,
    labels: torch.Tensor,
    cfg: InversionConfig,
    pool: SyntheticPool,
    server_round: int,
    max_age: int,
    *,
    input_shape: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    student: nn.Module | None = None,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> tuple[InversionResult, float]:
    """Invert ``model`` for ``labels`` starting from ``pool`` where it can, then refill it.

    Uses ``cfg.warm_steps`` when every sample starts from the pool, ``cfg.steps`` otherwise.
    Returns the result and the warm fraction.
    """
    gen = torch.Generator().manual_seed(seed)
    init, warm = pool.init_for(labels, tuple(input_shape), server_round, max_age, gen)
    res = invert(
        model,
        labels,
        cfg,
        input_shape=input_shape,
        mean=mean,
        std=std,
        init=init,
        steps=cfg.warm_steps if warm == 1.0 else cfg.steps,
        student=student,
        device=device,
        seed=seed,
    )
    pool.update(res.x, res.y, server_round)
    return res, warm
