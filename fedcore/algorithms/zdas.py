"""ZDAS, the server side of Fed-ZDA: invert every client model into synthetic samples, pool
them, and fine-tune the averaged model on the pool (cross-entropy on the inversion labels,
optionally distillation from the client ensemble weighted per class).

Warm starts (``zdas.pool``): one pool per client, refined when that client's next model
arrives (``client``: right when every client trains every round), or one bank keyed by
class that every arriving model draws from and refills (``class``: right under client
sampling); ``auto`` picks ``class`` when a round trains fewer than all clients. Clients share their
label counts only when asked (``zdas.share-label-counts``). ``replay_per_class`` tops every
class of the fine-tuning set up from the pools' samples of earlier rounds (a sampled round's
models cover a few classes).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from fedcore.algorithms.base import (
    Algorithm,
    ClientHook,
    ClientRound,
    LocalPlan,
    ServerStep,
    inversion_side_problems,
)
from fedcore.data import DataSpec
from fedcore.protocol import LABEL_COUNTS, SHARE_LABEL_COUNTS, TrainReply
from fedcore.training import Objective, Samples, TrainConfig, sgd_train
from inversion import InversionConfig, SyntheticPool, invert_with_pool, labels_for
from inversion.allocation import proportional_counts

StateDict = dict[str, torch.Tensor]
POOLS = ("auto", "client", "class")


@dataclass(frozen=True)
class ZdasConfig:
    """Server-side inversion and fine-tuning settings."""

    start_round: int = 1
    end_round: int = 0  # last round that fine-tunes; 0: every round from start_round on
    samples_per_client: int = 50  # with 2 warm steps: level with or above 100 x 5 (levers.md)
    use_label_counts: bool = False  # clients opt in to report counts; allocation follows them
    finetune_epochs: int = 3
    finetune_lr: float = 0.001  # small: 0.01 undid the average on #C=1 in our trials
    finetune_momentum: float = 0.9
    finetune_batch_size: int = 64
    ce_weight: float = 1.0
    kd_weight: float = 0.0  # distillation from the per-class-weighted client ensemble
    kd_temperature: float = 3.0
    update_bn_stats: bool = False  # keep the averaged BN running statistics by default
    pool_max_age: int = 5
    pool: str = "auto"  # warm starts from: client (a pool per client), class (one bank), auto
    pool_per_class: int = 256  # samples per class the class bank keeps (warm for skewed asks)
    replay_per_class: int = 0  # top each class of the fine-tuning set up to this from the pools
    inversion: InversionConfig = field(default_factory=lambda: InversionConfig(warm_steps=2))

    def problems(self, prefix: str) -> list[str]:
        out = inversion_side_problems(self, prefix)
        checks = [
            (
                self.end_round == 0 or self.end_round >= self.start_round,
                f"end_round: must be 0 (no end) or >= {prefix}start_round "
                f"({self.start_round}), got {self.end_round}",
            ),
            (self.samples_per_client >= 1, "samples_per_client: must be >= 1"),
            (self.pool in POOLS, f"pool: {self.pool!r} not in {POOLS}"),
            (self.pool_per_class >= 1, "pool_per_class: must be >= 1"),
            (self.replay_per_class >= 0, "replay_per_class: must be >= 0 (0: off)"),
            (
                self.replay_per_class == 0 or self.kd_weight == 0,
                "replay_per_class: replayed samples have no ensemble targets; set "
                f"{prefix}kd_weight=0 or {prefix}replay_per_class=0",
            ),
            (self.finetune_epochs >= 0, "finetune_epochs: must be >= 0"),
            (self.finetune_lr > 0, "finetune_lr: must be > 0"),
            (self.finetune_batch_size >= 2, "finetune_batch_size: must be >= 2 (BatchNorm)"),
            (0 <= self.finetune_momentum < 1, "finetune_momentum: must be in [0, 1)"),
        ]
        return out + [prefix + msg for ok, msg in checks if not ok]

    def active(self, server_round: int) -> bool:
        """Whether the server inverts and fine-tunes in ``server_round``."""
        return server_round >= self.start_round and (
            self.end_round == 0 or server_round <= self.end_round
        )


@dataclass
class ZdasOutcome:
    """The fine-tuned state, the pooled samples and diagnostics."""

    state: StateDict
    x: torch.Tensor
    y: torch.Tensor
    metrics: dict[str, float]
    sources: torch.Tensor  # the partition each sample was inverted from


def client_allocation(cfg: ZdasConfig, num_classes: int, counts: np.ndarray | None) -> np.ndarray:
    """Per-class sample counts for one client model: uniform, or proportional to its counts."""
    if cfg.use_label_counts and counts is not None and np.sum(counts) > 0:
        return proportional_counts(np.asarray(counts, dtype=float), cfg.samples_per_client)
    return proportional_counts(np.ones(num_classes), cfg.samples_per_client)


def ensemble_weights(counts: Sequence[np.ndarray | None], num_classes: int) -> torch.Tensor:
    """``(clients, classes)`` weights: each client's share of a class (uniform without counts)."""
    if any(c is None for c in counts):
        return torch.full((len(counts), num_classes), 1.0 / len(counts))
    m = torch.tensor(np.stack(counts), dtype=torch.float32)  # type: ignore[arg-type]
    total = m.sum(0, keepdim=True)
    return torch.where(total > 0, m / total.clamp_min(1), torch.full_like(m, 1 / len(counts)))


def replay(
    pools: Sequence[SyntheticPool],
    y: torch.Tensor,
    per_class: int,
    num_classes: int,
    server_round: int,
    max_age: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Samples from ``pools`` refined in an earlier round (at most ``max_age`` rounds ago)
    that top every class of ``y`` up to ``per_class``: under client sampling a round's client
    models cover a few classes, and fine-tuning on those alone pulls the average away from the
    others. This round's samples (already in the pools) are never drawn twice."""
    filled = [p for p in pools if not p.is_empty()]
    if not filled:
        return None
    px = torch.cat([p.x for p in filled])  # type: ignore[misc]
    py = torch.cat([p.y for p in filled])  # type: ignore[misc]
    age = server_round - torch.cat([p.rounds for p in filled])  # type: ignore[misc]
    ok = (age > 0) & (age <= max_age)
    picks = []
    for c in range(num_classes):
        need = per_class - int((y == c).sum())
        have = torch.nonzero((py == c) & ok).flatten()
        if need > 0 and len(have):
            picks.append(have[torch.randperm(len(have), generator=generator)[:need]])
    if not picks:
        return None
    idx = torch.cat(picks)
    return px[idx], py[idx]


def _bn_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {
        k: v.clone()
        for k, v in model.state_dict().items()
        if k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    }


ClientModel = tuple[int, StateDict, "np.ndarray | None"]  # partition, state, label counts


def zdas_finetune(
    make_model: Callable[[], nn.Module],
    averaged: StateDict,
    clients: Sequence[ClientModel],
    cfg: ZdasConfig,
    pools: dict[int, SyntheticPool],
    server_round: int,
    spec: DataSpec,
    *,
    device: torch.device | str = "cpu",
    seed: int = 0,
    bank_per_class: int = 0,
) -> ZdasOutcome:
    """Invert each client model (warm-started from ``pools``), then fine-tune ``averaged``.

    ``pools`` holds a pool per client id, or with ``bank_per_class`` > 0 one class bank
    (key -1) that keeps the newest ``bank_per_class`` samples of each class.
    """
    t0 = time.perf_counter()
    device = torch.device(device)
    student = make_model()
    student.load_state_dict(averaged)
    student.to(device)
    xs, ys, teachers, sources = [], [], [], []
    acc, bn_loss, warm_sum, inv_seconds = 0.0, 0.0, 0.0, 0.0
    for k, (cid, state, counts) in enumerate(clients):
        teacher = make_model()
        teacher.load_state_dict(state)
        teacher.to(device).eval()
        labels = torch.from_numpy(labels_for(client_allocation(cfg, spec.num_classes, counts)))
        res, warm = invert_with_pool(
            teacher, labels, cfg.inversion,
            pools.setdefault(-1 if bank_per_class else cid, SyntheticPool()),
            server_round, cfg.pool_max_age, spec,
            student=student if cfg.inversion.adi > 0 else None, device=device,
            seed=seed * 7919 + k, offset=cid if bank_per_class else 0,
            keep_per_class=bank_per_class,
        )  # fmt: skip
        xs.append(res.x)
        ys.append(res.y)
        sources.append(torch.full((len(res.y),), cid))
        teachers.append(teacher)
        acc += res.teacher_accuracy / len(clients)
        bn_loss += res.bn_loss_end / len(clients)
        warm_sum += warm / len(clients)
        inv_seconds += res.seconds
    x, y = torch.cat(xs), torch.cat(ys)
    data = Samples(x, y)
    if cfg.replay_per_class > 0:
        gen = torch.Generator().manual_seed(seed)
        extra = replay(list(pools.values()), y, cfg.replay_per_class, spec.num_classes,
                       server_round, cfg.pool_max_age, gen)  # fmt: skip
        if extra is not None:
            data = Samples(torch.cat([x, extra[0]]), torch.cat([y, extra[1]]))
    if cfg.kd_weight > 0:
        w = ensemble_weights([c[2] for c in clients], spec.num_classes).to(device)  # (K, C)
        with torch.no_grad():
            per_model = torch.stack([t(x.to(device)) for t in teachers])  # (K, N, C)
            data.teacher_logits = (per_model * w[:, y.to(device)].unsqueeze(-1)).sum(0).cpu()

    keep = _bn_buffers(student)
    # Fine-tune the model as it will be evaluated: with update_bn_stats off, BatchNorm keeps
    # normalising with the averaged running statistics (eval mode) and only its affine
    # parameters and the weights learn; with it on, BN uses (and tracks) batch statistics.
    opt = TrainConfig(
        cfg.finetune_epochs, cfg.finetune_batch_size, cfg.finetune_lr, cfg.finetune_momentum
    )
    stats = sgd_train(
        student, data, opt, Objective(cfg.ce_weight, cfg.kd_weight, cfg.kd_temperature),
        device=device, seed=seed, bn_train=cfg.update_bn_stats,
    )  # fmt: skip
    state = {k: v.detach().cpu() for k, v in student.state_dict().items()}
    if not cfg.update_bn_stats:
        state.update({k: v.cpu() for k, v in keep.items()})
    metrics = {
        "zdas-samples": float(len(y)),
        "zdas-replayed": float(len(data.y) - len(y)),
        "zdas-inv-seconds": inv_seconds,
        "zdas-teacher-acc": acc,
        "zdas-bn-loss": bn_loss,
        "zdas-warm-fraction": warm_sum,
        "zdas-finetune-steps": float(stats.steps),
        "zdas-finetune-loss": stats.loss,
        "zdas-seconds": time.perf_counter() - t0,
    }
    return ZdasOutcome(state, x, y, metrics, torch.cat(sources))


class LabelCountsHook(ClientHook):
    """Reports this client's label counts (only sent when the server asks for them)."""

    def before(self, rnd: ClientRound, plan: LocalPlan) -> None:
        plan.metrics[LABEL_COUNTS] = [int(c) for c in rnd.label_counts]


class Zdas(Algorithm):
    """FedAvg, then every client model inverted and the average fine-tuned on the pool."""

    name = "zdas"
    composes_with_proximal = True
    averages_only = False  # inverts every client's model

    def __init__(self, setup) -> None:
        super().__init__(setup)
        self.cfg: ZdasConfig = setup.cfg.zdas
        self.pools: dict[int, SyntheticPool] = {}
        auto = self.cfg.pool == "auto" and setup.samples_clients
        shared = self.cfg.pool == "class" or auto
        self.bank_per_class = self.cfg.pool_per_class if shared else 0

    @classmethod
    def client_hook(cls, config: dict[str, Any], arrays: dict) -> ClientHook | None:
        return LabelCountsHook() if config.get(SHARE_LABEL_COUNTS) else None

    def train_config(self, server_round: int) -> dict[str, Any]:
        return {SHARE_LABEL_COUNTS: True} if self.cfg.use_label_counts else {}

    def server_update(
        self, server_round: int, averaged: StateDict, replies: Sequence[TrainReply]
    ) -> ServerStep:
        if not self.cfg.active(server_round):
            return ServerStep(averaged)
        s = self.setup
        out = zdas_finetune(
            s.make_model, averaged, [(r.partition_id, r.state, r.label_counts) for r in replies],
            self.cfg, self.pools, server_round, s.spec,
            device=s.device, seed=s.cfg.seed * 100_003 + server_round,
            bank_per_class=self.bank_per_class,
        )  # fmt: skip
        return ServerStep(out.state, out.metrics, (out.x, out.y), out.sources)

    def state_dict(self) -> dict[str, Any]:
        """The per-client synthetic pools."""
        return {"pools": {cid: pool.state() for cid, pool in self.pools.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pools = {int(c): SyntheticPool.from_state(s) for c, s in state["pools"].items()}
