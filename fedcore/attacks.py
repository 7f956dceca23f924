"""Model-poisoning attacks for robustness experiments: turn a client's honest update into a
poisoned but well-formed one (same keys, shapes and dtypes, finite values).

Used only by configured attacks (off by default). ``sent`` is the global model the client
received, ``trained`` its honest result; only floating tensors named in ``names`` change,
every other tensor is copied from ``trained``. Inputs are never modified.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

import numpy as np
import torch

from fedcore.seeds import ATTACKERS, derive_seed
from fedcore.types import StateDict

ATTACKS = ("sign_flip", "scale", "label_flip", "random", "inflate_count")
KINDS = ("none", *ATTACKS)


@dataclass(frozen=True)
class AttackConfig:
    """Poisoned but well-formed updates from a fixed, seeded share of the clients, every
    round they are sampled (for robustness tests and tables; off by default)."""

    kind: str = "none"  # or sign_flip, scale, label_flip (y -> C-1-y), random, inflate_count
    share: float = 0.2  # the share of clients that attack (chosen once per run from the seed)
    scale: float = 10.0  # kind=scale: the update is multiplied by this
    count_factor: float = 100.0  # inflate_count: claims this times its true example count

    def problems(self, prefix: str) -> list[str]:
        checks = [
            (self.kind in KINDS, f"kind: {self.kind!r} not in {KINDS}"),
            (0 <= self.share <= 1, f"share: must be in [0, 1], got {self.share}"),
            (self.count_factor >= 1, f"count_factor: must be >= 1, got {self.count_factor}"),
        ]
        return [prefix + msg for ok, msg in checks if not ok]

    def attackers(self, num_clients: int, run_seed: int) -> frozenset[int]:
        """The run's attacking partitions (none without an attack)."""
        if self.kind == "none":
            return frozenset()
        return malicious_clients(num_clients, self.share, derive_seed(run_seed, 0, ATTACKERS))


def _apply(
    sent: StateDict,
    trained: StateDict,
    names: Collection[str],
    change: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> StateDict:
    """Copy ``trained``, replacing each named floating tensor ``t`` (``s`` in ``sent``) by
    ``change(s, t)`` computed in float64 and cast back."""
    out: StateDict = {}
    for key, t in trained.items():
        if key not in names or not t.is_floating_point():
            out[key] = t.clone()
            continue
        if key not in sent:
            raise ValueError(f"{key} is in the trained model but not in the sent one")
        s = sent[key]
        if s.shape != t.shape:
            raise ValueError(f"shape mismatch for {key}: {tuple(s.shape)} vs {tuple(t.shape)}")
        s64 = s.detach().to(device=t.device, dtype=torch.float64)
        out[key] = change(s64, t.detach().to(torch.float64)).to(t.dtype)
    return out


def sign_flip(sent: StateDict, trained: StateDict, names: Collection[str]) -> StateDict:
    """The update reversed: ``sent - (trained - sent)``."""
    return _apply(sent, trained, names, lambda s, t: s - (t - s))


def scale(sent: StateDict, trained: StateDict, names: Collection[str], factor: float) -> StateDict:
    """The update scaled: ``sent + factor * (trained - sent)``."""
    return _apply(sent, trained, names, lambda s, t: s + factor * (t - s))


def random_update(
    sent: StateDict, trained: StateDict, names: Collection[str], generator: torch.Generator
) -> StateDict:
    """``sent`` plus Gaussian noise with, per tensor, the RMS of the honest update: an update
    of the honest size that carries no information. Zero-size tensors are left alone."""

    def noise(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if t.numel() == 0:
            return t
        sigma = (t - s).pow(2).mean().sqrt()
        draw = torch.randn(t.shape, generator=generator, dtype=torch.float64)
        return s + draw.to(s.device) * sigma

    return _apply(sent, trained, names, noise)


def permute_labels(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Label flipping: ``y -> num_classes - 1 - y`` (an involution on ``range(num_classes)``)."""
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}), got {y.min()}..{y.max()}")
    return num_classes - 1 - y


def malicious_clients(num_clients: int, share: float, seed: int) -> frozenset[int]:
    """A fixed, seeded choice of ``round(share * num_clients)`` of the partition ids
    ``0 .. num_clients - 1``."""
    if not 0 <= share <= 1:
        raise ValueError(f"share must be in [0, 1], got {share}")
    if num_clients < 0:
        raise ValueError(f"num_clients must be non-negative, got {num_clients}")
    chosen = np.random.default_rng(seed).permutation(num_clients)[: round(share * num_clients)]
    return frozenset(int(i) for i in chosen)


Tamper = Callable[[AttackConfig, StateDict, StateDict, Collection[str], int], StateDict]
TAMPER: dict[str, Tamper] = {  # how each attack turns the trained model
    "sign_flip": lambda cfg, sent, trained, names, seed: sign_flip(sent, trained, names),
    "scale": lambda cfg, sent, trained, names, seed: scale(sent, trained, names, cfg.scale),
    "random": lambda cfg, sent, trained, names, seed: random_update(
        sent, trained, names, torch.Generator().manual_seed(seed)
    ),
}


def poison(
    cfg: AttackConfig,
    sent: StateDict,
    trained: StateDict,
    num_examples: int,
    names: Collection[str],
    seed: int,
) -> tuple[StateDict, int]:
    """An attacker's reply: its trained model and example count as ``cfg.kind`` turns them
    (``label_flip`` acts on the data before training: its reply is left as it is)."""
    tamper = TAMPER.get(cfg.kind)
    state = tamper(cfg, sent, trained, names, seed) if tamper else trained
    factor = cfg.count_factor if cfg.kind == "inflate_count" else 1.0
    return state, round(num_examples * factor)
