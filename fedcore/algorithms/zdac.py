"""ZDAC, the client side of Fed-ZDA: invert the received global model into synthetic
samples that balance this client's class mix, and train on real + synthetic data.

The server sends ZDAC's settings flattened under ``zdac.`` in the train ConfigRecord.
Warm starts come from one of two places (``zdac.pool``): each client's own pool, kept in its
persistent state (``client``: right when every client trains every round), or a bank the
server inverts from the global model once per round and sends with the model as the
ArrayRecord ``zdac-bank`` (``server``: right under client sampling, where a client comes
back too rarely for its own pool to be fresh; the upload stays FedAvg's). ``auto`` picks
``server`` when a round trains fewer than all clients.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from fedcore.algorithms.base import (
    Algorithm,
    ClientHook,
    ClientRound,
    LocalPlan,
    ServerSetup,
    ServerStep,
    StateDict,
    inversion_side_problems,
)
from fedcore.data import DataSpec
from fedcore.protocol import ZDAC_BANK, ZDAC_PREFIX, TrainReply
from fedcore.schema import flatten, from_flat
from fedcore.training import Synthetic
from inversion import (
    InversionConfig,
    SyntheticPool,
    allocate,
    invert_with_pool,
    labels_for,
)
from inversion.allocation import ALLOCATIONS

POOL_KEY = "zdac-pool"  # the client's persistent state key for its synthetic pool
POOLS = ("auto", "client", "server")
WEIGHTINGS = ("fixed", "missing-mass")
PREVIEW_PER_CLASS = 2


@dataclass(frozen=True)
class ZdacConfig:
    """Client-side inversion and augmentation settings."""

    start_round: int = 2  # a random model inverts to nothing useful
    allocation: str = "complement"
    budget: float = 0.1  # ratio of local data if < 1, else a sample count
    synthetic_weight: float = 1.0  # with weighting=fixed; real samples weigh 1
    weighting: str = "fixed"  # or missing-mass: synthetic share = deficit / (N + deficit)
    paired_batch_size: int = 0  # >0: every real batch trains with this many synthetic samples
    kd_weight: float = 0.0  # distillation from the global model on synthetic samples
    kd_temperature: float = 3.0
    pool_max_age: int = 5  # rounds before a pool is stale and inversion restarts from noise
    pool: str = "auto"  # warm starts from: client (own pool), server (bank), auto
    bank_per_class: int = 32  # samples per class in the server's bank
    refine_bank: bool = False  # clients refine the bank's samples (the server already did)
    preview_client: int = 0  # this partition sends a few samples for the server's image grid
    inversion: InversionConfig = field(default_factory=InversionConfig)

    def problems(self, prefix: str) -> list[str]:
        out = inversion_side_problems(self, prefix)
        checks = [
            (self.allocation in ALLOCATIONS, f"allocation: {self.allocation!r} not in "
                                             f"{ALLOCATIONS}"),
            (self.budget >= 0, f"budget: must be >= 0 (ratio < 1 or a count), got {self.budget}"),
            (self.synthetic_weight >= 0, "synthetic_weight: must be >= 0"),
            (self.weighting in WEIGHTINGS, f"weighting: {self.weighting!r} not in {WEIGHTINGS}"),
            (self.paired_batch_size >= 0, "paired_batch_size: must be >= 0 (0: shuffled in)"),
            (self.pool in POOLS, f"pool: {self.pool!r} not in {POOLS}"),
            (self.bank_per_class >= 1, "bank_per_class: must be >= 1"),
        ]  # fmt: skip
        return out + [prefix + msg for ok, msg in checks if not ok]


@dataclass
class ZdacOutcome:
    """What the client trains with, plus diagnostics for its metrics."""

    synthetic: Synthetic | None
    metrics: dict[str, float]


def loss_weights(
    cfg: ZdacConfig, label_counts: np.ndarray, num_synthetic: int
) -> tuple[float, float]:
    """``(real, synthetic)`` loss weights.

    ``fixed``: 1 and ``synthetic_weight``. ``missing-mass``: the synthetic share of the loss is
    the client's missing mass ``a = D / (N + D)``, ``D = sum_c (max count - count_c)`` (near 1
    for a client holding one class, 0 for a balanced one). Paired batches weigh the two batch
    losses ``1 - a`` and ``a``; shuffled in, per-sample weights give the same shares.
    """
    if cfg.weighting == "fixed":
        return 1.0, cfg.synthetic_weight
    counts = np.asarray(label_counts, dtype=float)
    n, deficit = counts.sum(), float((counts.max() - counts).sum())
    a = deficit / (n + deficit) if n + deficit > 0 else 0.0
    if cfg.paired_batch_size > 0 or num_synthetic == 0:
        return 1.0 - a, a
    total = n + num_synthetic
    return (1.0 - a) * total / max(n, 1.0), a * total / num_synthetic


def zdac_augment(
    global_model: nn.Module,
    label_counts: np.ndarray,
    cfg: ZdacConfig,
    pool: SyntheticPool,
    server_round: int,
    spec: DataSpec,
    *,
    device: torch.device | str = "cpu",
    seed: int = 0,
    offset: int = 0,
) -> ZdacOutcome:
    """Invert ``global_model`` for the allocated classes (warm-started from ``pool``).

    Updates ``pool`` in place. Returns no synthetic data before ``cfg.start_round`` or when
    the allocation is empty (an already balanced client under ``complement``).
    """
    metrics = {
        "syn-count": 0.0,
        "inv-seconds": 0.0,
        "inv-teacher-acc": 0.0,
        "inv-bn-loss": 0.0,
        "inv-warm-fraction": 0.0,
        "inv-warm-count": 0.0,
        "syn-weight": 0.0,
    }
    if server_round < cfg.start_round:
        return ZdacOutcome(None, metrics)
    per_class = allocate(cfg.allocation, label_counts, cfg.budget)
    if per_class.sum() == 0:
        return ZdacOutcome(None, metrics)
    labels = torch.from_numpy(labels_for(per_class))
    res, warm = invert_with_pool(
        global_model, labels, cfg.inversion, pool, server_round, cfg.pool_max_age, spec,
        device=device, seed=seed, offset=offset,
    )  # fmt: skip
    teacher_logits = None
    if cfg.kd_weight > 0:  # the global model's soft labels for the synthetic samples
        was_training = global_model.training
        global_model.eval()
        with torch.no_grad():
            teacher_logits = global_model(res.x.to(device)).cpu()
        global_model.train(was_training)
    metrics.update(
        {
            "syn-count": float(len(res.y)),
            "inv-seconds": res.seconds,
            "inv-teacher-acc": res.teacher_accuracy,
            "inv-bn-loss": res.bn_loss_end,
            "inv-warm-fraction": warm,
            "inv-warm-count": float(round(warm * len(res.y))),
        }
    )
    real_w, syn_w = loss_weights(cfg, label_counts, len(res.y))
    metrics["syn-weight"] = syn_w
    syn = Synthetic(
        res.x, res.y, syn_w, teacher_logits, cfg.kd_weight, cfg.kd_temperature,
        real_weight=real_w, paired_batch_size=cfg.paired_batch_size,
    )  # fmt: skip
    return ZdacOutcome(syn, metrics)


def preview(syn: Synthetic, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A few synthetic samples per class, for the server's image grid."""
    keep = torch.cat(
        [torch.nonzero(syn.y == c).flatten()[:PREVIEW_PER_CLASS] for c in range(num_classes)]
    )
    return syn.x[keep], syn.y[keep]


class ZdacHook(ClientHook):
    """Inverts the received model and adds the samples to local training."""

    def __init__(self, cfg: ZdacConfig) -> None:
        self.cfg = cfg

    def before(self, rnd: ClientRound, plan: LocalPlan) -> None:
        bank = rnd.arrays.get(ZDAC_BANK)
        own = bank is None  # with the server's bank, nothing is kept on the client
        pool = SyntheticPool.from_state(rnd.state.get(POOL_KEY, {}) if own else bank)
        cfg = self.cfg
        if not own and not cfg.refine_bank:  # refined against this very model on the server
            cfg = replace(cfg, inversion=replace(cfg.inversion, warm_steps=0))
        out = zdac_augment(
            rnd.model, rnd.label_counts, cfg, pool, rnd.server_round, rnd.spec,
            device=rnd.device, seed=rnd.seed, offset=0 if own else rnd.partition_id,
        )  # fmt: skip
        if own and not pool.is_empty():
            rnd.state[POOL_KEY] = pool.state()
        plan.synthetic = out.synthetic
        plan.metrics |= out.metrics
        if rnd.partition_id == self.cfg.preview_client and out.synthetic is not None:
            plan.preview = preview(out.synthetic, rnd.spec.num_classes)


class Zdac(Algorithm):
    """FedAvg on the server; every train message carries ZDAC's settings, and with the
    server's bank the bank's samples, refined against the global model first."""

    name = "zdac"
    composes_with_proximal = True

    def __init__(self, setup: ServerSetup) -> None:
        super().__init__(setup)
        self.cfg: ZdacConfig = setup.cfg.zdac
        auto = self.cfg.pool == "auto" and setup.samples_clients
        # under secure aggregation a train message carries only the model and its config
        self.banks = (self.cfg.pool == "server" or auto) and not setup.cfg.server.secure_aggregation
        self.bank = SyntheticPool()
        self.bank_metrics: dict[str, float] = {}

    def train_arrays(self, server_round: int, global_state: StateDict) -> dict[str, StateDict]:
        """The bank, refined against the global model (warm from last round's bank)."""
        if not self.banks or server_round < self.cfg.start_round:
            return {}
        s = self.setup
        model = s.make_model()
        model.load_state_dict(global_state)
        per_class = np.full(s.spec.num_classes, self.cfg.bank_per_class)
        labels = torch.from_numpy(labels_for(per_class))
        res, warm = invert_with_pool(
            model, labels, self.cfg.inversion, self.bank, server_round, self.cfg.pool_max_age,
            s.spec, device=s.device, seed=s.cfg.seed * 7_919 + server_round,
        )  # fmt: skip
        self.bank_metrics = {
            "zdac-bank-samples": float(len(labels)),
            "zdac-bank-seconds": res.seconds,
            "zdac-bank-warm-fraction": warm,
        }
        return {ZDAC_BANK: self.bank.state()}

    def server_update(
        self, server_round: int, averaged: StateDict, replies: Sequence[TrainReply]
    ) -> ServerStep:
        metrics, self.bank_metrics = self.bank_metrics, {}
        return ServerStep(averaged, metrics)

    def state_dict(self) -> dict[str, Any]:
        return {"bank": self.bank.state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.bank = SyntheticPool.from_state(state["bank"])

    @classmethod
    def client_hook(cls, config: dict[str, Any], arrays: dict) -> ClientHook | None:
        if not any(k.startswith(ZDAC_PREFIX) for k in config):
            return None
        return ZdacHook(from_flat(ZdacConfig, config, ZDAC_PREFIX))

    def train_config(self, server_round: int) -> dict[str, Any]:
        return flatten(self.setup.cfg.zdac, ZDAC_PREFIX)
