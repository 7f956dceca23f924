"""Amortised inversion: a pool of synthetic samples refined across rounds.

Instead of inverting from noise every round, each side keeps its last samples and refines
them for ``warm_steps`` against the new model. A pool older than ``max_age`` rounds is
discarded (stale), and classes the pool lacks start from noise. The pool serialises to and
from plain tensors so a client can keep it in Flower's ``Context.state``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from inversion.engine import InputSpec, InversionConfig, InversionResult, invert


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
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Starting inputs for ``labels``: pool samples of the same class where available,
        N(0, 1) noise elsewhere. Returns the inputs and a boolean mask of the warm ones."""
        init = torch.randn((labels.numel(), *input_shape), generator=generator)
        warm = torch.zeros(labels.numel(), dtype=torch.bool)
        if self.is_empty() or server_round - self.round > max_age:
            return init, warm
        assert self.x is not None and self.y is not None
        for c in labels.unique().tolist():
            want = torch.nonzero(labels == c).flatten()
            have = torch.nonzero(self.y == c).flatten()
            k = min(len(want), len(have))
            if k:
                init[want[:k]] = self.x[have[:k]]
                warm[want[:k]] = True
        return init, warm

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


def _merge(parts: list[InversionResult], order: torch.Tensor) -> InversionResult:
    """One result from the warm and cold parts, back in the callers' sample ``order``."""
    n = sum(len(r.y) for r in parts)
    x, y = torch.cat([r.x for r in parts]), torch.cat([r.y for r in parts])
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(len(order))
    seconds = sum(r.seconds for r in parts)
    sample_steps = sum(len(r.y) * r.steps for r in parts)

    def mean(field: str) -> float:
        return sum(getattr(r, field) * len(r.y) for r in parts) / max(n, 1)

    return InversionResult(
        x=x[inverse],
        y=y[inverse],
        teacher_accuracy=mean("teacher_accuracy"),
        bn_loss_start=mean("bn_loss_start"),
        bn_loss_end=mean("bn_loss_end"),
        seconds=seconds,
        steps=max(r.steps for r in parts),
        sample_steps_per_s=sample_steps / seconds if seconds > 0 else 0.0,
    )


def invert_with_pool(
    model: nn.Module,
    labels: torch.Tensor,
    cfg: InversionConfig,
    pool: SyntheticPool,
    server_round: int,
    max_age: int,
    spec: InputSpec,
    *,
    student: nn.Module | None = None,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> tuple[InversionResult, float]:
    """Invert ``model`` for ``labels`` starting from ``pool`` where it can, then refill it.

    Samples that start from the pool get ``cfg.warm_steps``, the others (a first round, a
    stale pool, a class the pool lacks) ``cfg.steps`` from noise; each group is optimised
    separately, so a few new samples never make the whole set pay the cold-start price.
    Returns the result (in the order of ``labels``) and the warm fraction.
    """
    gen = torch.Generator().manual_seed(seed)
    init, warm = pool.init_for(labels, tuple(spec.input_shape), server_round, max_age, gen)
    parts, order = [], []
    for is_warm, steps in ((True, cfg.warm_steps), (False, cfg.steps)):
        idx = torch.nonzero(warm == is_warm).flatten()
        if len(idx) == 0:
            continue
        parts.append(
            invert(
                model,
                labels[idx],
                cfg,
                spec,
                init=init[idx],
                steps=steps,
                student=student,
                device=device,
                seed=seed + int(is_warm),
            )
        )
        order.append(idx)
    if not parts:  # no labels at all: an empty result
        return invert(model, labels, cfg, spec), 0.0
    res = _merge(parts, torch.cat(order))
    pool.update(res.x, res.y, server_round)
    return res, float(warm.float().mean())
