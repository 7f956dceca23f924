"""Amortised inversion: a bank of synthetic samples refined across rounds.

Instead of inverting from noise every round, each side keeps its last samples and refines
them for ``warm_steps`` against the new model. Samples older than ``max_age`` rounds are
stale, and classes the bank lacks start from noise. A bank holds either one model's own
samples (per client), or samples keyed by class that any model draws from and refills
(shared: warm starts survive client sampling, where the same client rarely comes back). It
serialises to and from plain tensors so a client can keep it in Flower's ``Context.state``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from inversion.engine import InputSpec, InversionConfig, InversionResult, invert


def _empty(dtype: torch.dtype = torch.long) -> torch.Tensor:
    return torch.empty(0, dtype=dtype)


@dataclass
class SyntheticBank:
    """Synthetic inputs ``x`` with labels ``y``; ``rounds[i]`` is the round in which sample
    ``i`` was last refined (an empty bank holds empty tensors). A bank is one side's own
    samples (``update`` replaces them) or shared across models (``merge`` keeps the newest
    ``per_class`` of each class). ``drawn[i]`` is the round in which sample ``i`` last
    seeded a spread warm start (kept in memory only: it matters within a round)."""

    x: torch.Tensor = field(default_factory=lambda: _empty(torch.float32))
    y: torch.Tensor = field(default_factory=_empty)
    rounds: torch.Tensor = field(default_factory=_empty)
    drawn: torch.Tensor | None = None

    def is_empty(self) -> bool:
        return self.y.numel() == 0

    @property
    def round(self) -> int:
        """The latest round any sample was refined in (-1 when empty)."""
        return -1 if self.is_empty() else int(self.rounds.max())

    def init_for(
        self,
        labels: torch.Tensor,
        input_shape: tuple[int, ...],
        server_round: int,
        max_age: int,
        generator: torch.Generator,
        offset: int = 0,
        spread: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Starting inputs for ``labels``: bank samples of the same class refined at most
        ``max_age`` rounds ago where available (from the ``offset``-th on, cycling), N(0, 1)
        noise elsewhere. ``spread``: only samples refined in an earlier round, those no
        other call of this round has drawn first (newest first; ``offset`` unused), so the
        models of one round start from different samples and no sample is refined twice
        in a row. Returns the inputs and a boolean mask of the warm ones."""
        init = torch.randn((labels.numel(), *input_shape), generator=generator)
        warm = torch.zeros(labels.numel(), dtype=torch.bool)
        if self.is_empty():
            return init, warm
        fresh = server_round - self.rounds <= max_age
        drawn = None  # with spread: the bank's draw record, updated in place
        if spread:
            fresh &= self.rounds < server_round
            if self.drawn is None:
                self.drawn = torch.full_like(self.rounds, -1)
            drawn = self.drawn
        for c in labels.unique().tolist():
            want = torch.nonzero(labels == c).flatten()
            have = torch.nonzero((self.y == c) & fresh).flatten()
            if drawn is not None:
                taken = drawn[have] == server_round
                have = torch.cat([have[~taken], have[taken]])
            elif len(have) and offset:
                have = have.roll(-(offset % len(have)))
            k = min(len(want), len(have))
            if k:
                init[want[:k]] = self.x[have[:k]]
                warm[want[:k]] = True
                if drawn is not None:
                    drawn[have[:k]] = server_round
        return init, warm

    def update(self, x: torch.Tensor, y: torch.Tensor, server_round: int) -> None:
        """Replace the bank with freshly refined samples."""
        self.x, self.y = x.detach().cpu(), y.detach().cpu().long()
        self.rounds = torch.full((len(self.y),), server_round, dtype=torch.long)
        self.drawn = None

    def merge(self, x: torch.Tensor, y: torch.Tensor, server_round: int, per_class: int) -> None:
        """Add freshly refined samples, keeping the newest ``per_class`` of every class."""
        if self.is_empty():
            self.update(x, y, server_round)
            x_all, y_all, r_all, d_all = self.x, self.y, self.rounds, None
        else:
            new_r = torch.full((len(y),), server_round, dtype=torch.long)
            x_all = torch.cat([x.detach().cpu(), self.x])
            y_all = torch.cat([y.detach().cpu().long(), self.y])
            r_all = torch.cat([new_r, self.rounds])
            drawn = self.drawn
            d_all = None if drawn is None else torch.cat([torch.full_like(new_r, -1), drawn])
        keep = torch.cat(
            [torch.nonzero(y_all == c).flatten()[:per_class] for c in y_all.unique().tolist()]
        )
        keep = keep.sort().values
        self.x, self.y, self.rounds = x_all[keep], y_all[keep], r_all[keep]
        self.drawn = None if d_all is None else d_all[keep]

    def state(self) -> dict[str, torch.Tensor]:
        """Plain tensors (for Context.state, messages and checkpoints; none when empty)."""
        if self.is_empty():
            return {}
        return {"x": self.x, "y": self.y, "rounds": self.rounds}

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor]) -> SyntheticBank:
        if not state:
            return cls()
        y = state["y"].long()
        rounds = (
            state["rounds"].long() if "rounds" in state else torch.full_like(y, int(state["round"]))
        )
        return cls(state["x"], y, rounds)


BANK_MODES = ("auto", "per-client", "shared")


def shares_bank(mode: str, samples_clients: bool) -> bool:
    """Whether bank ``mode`` means one bank shared across models: ``shared``, or ``auto``
    when a round trains fewer than all clients (a client then comes back too rarely for
    a bank of its own to stay fresh)."""
    return mode == "shared" or (mode == "auto" and samples_clients)


@dataclass
class BankSlot:
    """Where one model's inversion warm-starts and refills: the bank, the offset it draws
    from, and the newest samples per class it keeps (0: it replaces the bank)."""

    bank: SyntheticBank
    offset: int = 0
    keep_per_class: int = 0


@dataclass
class OwnBanks:
    """One bank per model source (a client id), replaced by that source's next inversion."""

    banks: dict[int, SyntheticBank] = field(default_factory=dict)

    def slot(self, source: int) -> BankSlot:
        return BankSlot(self.banks.setdefault(source, SyntheticBank()))

    def all(self) -> list[SyntheticBank]:
        return list(self.banks.values())

    def state(self) -> dict[str, dict[int, dict[str, torch.Tensor]]]:
        return {"own": {k: b.state() for k, b in self.banks.items()}}


@dataclass
class SharedBank:
    """One bank keyed by class that every model draws from (from its source id on) and
    refills, keeping the newest ``per_class`` samples of each class."""

    per_class: int
    bank: SyntheticBank = field(default_factory=SyntheticBank)

    def slot(self, source: int) -> BankSlot:
        return BankSlot(self.bank, source, self.per_class)

    def all(self) -> list[SyntheticBank]:
        return [self.bank]

    def state(self) -> dict[str, dict[str, torch.Tensor]]:
        return {"shared": self.bank.state()}


Banks = OwnBanks | SharedBank


def banks_from_state(state: dict[str, Any], per_class: int) -> Banks:
    """The banks :meth:`OwnBanks.state` or :meth:`SharedBank.state` saved."""
    if "shared" in state:
        return SharedBank(per_class, SyntheticBank.from_state(state["shared"]))
    own = state.get("own", {})
    return OwnBanks({int(k): SyntheticBank.from_state(b) for k, b in own.items()})


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


def invert_with_bank(
    model: nn.Module,
    labels: torch.Tensor,
    cfg: InversionConfig,
    bank: SyntheticBank,
    server_round: int,
    max_age: int,
    spec: InputSpec,
    *,
    student: nn.Module | None = None,
    device: torch.device | str = "cpu",
    seed: int = 0,
    offset: int = 0,
    keep_per_class: int = 0,
    spread: bool = False,
) -> tuple[InversionResult, float]:
    """Invert ``model`` for ``labels`` starting from ``bank`` where it can, then refill it.

    Samples that start from the bank get ``cfg.warm_steps``, the others (a first round, a
    stale bank, a class the bank lacks) ``cfg.steps`` from noise; each group is optimised
    separately, so a few new samples never make the whole set pay the cold-start price.
    A bank shared across models (``keep_per_class`` > 0) merges the new samples instead of
    being replaced by them, and ``offset`` (or ``spread``, see :meth:`SyntheticBank.init_for`)
    spreads its users over its samples.
    Returns the result (in the order of ``labels``) and the warm fraction.
    """
    gen = torch.Generator().manual_seed(seed)
    shape = tuple(spec.input_shape)
    init, warm = bank.init_for(labels, shape, server_round, max_age, gen, offset, spread)
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
    if keep_per_class > 0:
        bank.merge(res.x, res.y, server_round, keep_per_class)
    else:
        bank.update(res.x, res.y, server_round)
    return res, float(warm.float().mean())


def nearest_rms(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean over samples of the RMS difference (per input value) to the nearest other
    sample of the same class: 0 for copies, so samples warm-started from a collapsed bank
    show as a fall. Classes with a single sample are left out (0.0 when no class has two)."""
    flat, out = x.detach().flatten(1).float().cpu(), []
    for c in y.unique().tolist():
        f = flat[y.cpu() == c]
        if len(f) > 1:
            d = torch.cdist(f, f, compute_mode="donot_use_mm_for_euclid_dist")  # copies: 0
            d.fill_diagonal_(float("inf"))
            out.append(d.min(1).values / f.shape[1] ** 0.5)
    return float(torch.cat(out).mean()) if out else 0.0
