"""ZDAS, the server side of Fed-ZDA: invert every client model into synthetic samples, pool
them, and fine-tune the averaged model on the pool (cross-entropy on the inversion labels,
optionally distillation from the client ensemble weighted per class)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fedtask.training import distillation_loss, iterate_batches
from inversion.allocation import labels_for, proportional_counts
from inversion.engine import InversionConfig
from inversion.pool import SyntheticPool, invert_with_pool

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class ZdasConfig:
    """Server-side inversion and fine-tuning settings."""

    start_round: int = 1
    end_round: int = 0  # last round that fine-tunes; 0: every round from start_round on
    samples_per_client: int = 100
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
    inversion: InversionConfig = field(default_factory=InversionConfig)

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


def _bn_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {
        k: v.clone()
        for k, v in model.state_dict().items()
        if k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    }


def zdas_finetune(
    make_model: Callable[[], nn.Module],
    averaged: StateDict,
    client_states: Sequence[StateDict],
    client_ids: Sequence[int],
    client_counts: Sequence[np.ndarray | None],
    cfg: ZdasConfig,
    pools: dict[int, SyntheticPool],
    server_round: int,
    *,
    input_shape: tuple[int, ...],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    num_classes: int,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> ZdasOutcome:
    """Invert each client model (warm-started from ``pools``), then fine-tune ``averaged``."""
    t0 = time.perf_counter()
    device = torch.device(device)
    student = make_model()
    student.load_state_dict(averaged)
    student.to(device)
    xs, ys, teachers = [], [], []
    acc, bn_loss, warm_sum, inv_seconds = 0.0, 0.0, 0.0, 0.0
    for k, (state, cid, counts) in enumerate(
        zip(client_states, client_ids, client_counts, strict=True)
    ):
        teacher = make_model()
        teacher.load_state_dict(state)
        teacher.to(device).eval()
        labels = torch.from_numpy(labels_for(client_allocation(cfg, num_classes, counts)))
        res, warm = invert_with_pool(
            teacher,
            labels,
            cfg.inversion,
            pools.setdefault(cid, SyntheticPool()),
            server_round,
            cfg.pool_max_age,
            input_shape=input_shape,
            mean=mean,
            std=std,
            student=student if cfg.inversion.adi > 0 else None,
            device=device,
            seed=seed * 7919 + k,
        )
        xs.append(res.x)
        ys.append(res.y)
        teachers.append(teacher)
        acc += res.teacher_accuracy / len(client_states)
        bn_loss += res.bn_loss_end / len(client_states)
        warm_sum += warm / len(client_states)
        inv_seconds += res.seconds
    x, y = torch.cat(xs), torch.cat(ys)

    ens_logits = None
    if cfg.kd_weight > 0:
        w = ensemble_weights(client_counts, num_classes).to(device)  # (K, C)
        with torch.no_grad():
            per_model = torch.stack([t(x.to(device)) for t in teachers])  # (K, N, C)
            ens_logits = (per_model * w[:, y.to(device)].unsqueeze(-1)).sum(0).cpu()

    keep = _bn_buffers(student)
    # Fine-tune the model as it will be evaluated: with update_bn_stats off, BatchNorm keeps
    # normalising with the averaged running statistics (eval mode) and only its affine
    # parameters and the weights learn; with it on, BN uses (and tracks) batch statistics.
    student.train(cfg.update_bn_stats)
    opt = torch.optim.SGD(student.parameters(), lr=cfg.finetune_lr, momentum=cfg.finetune_momentum)
    gen = torch.Generator().manual_seed(seed)
    steps, loss_sum = 0, 0.0
    for _ in range(cfg.finetune_epochs):
        for xb, yb, idx in iterate_batches(x, y, cfg.finetune_batch_size, gen):
            if yb.numel() < 2:
                continue
            xb, yb = xb.to(device), yb.to(device)
            logits = student(xb)
            loss = cfg.ce_weight * F.cross_entropy(logits, yb)
            if ens_logits is not None:
                loss = loss + cfg.kd_weight * distillation_loss(
                    logits, ens_logits[idx].to(device), cfg.kd_temperature
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach())
            steps += 1
    state = {k: v.detach().cpu() for k, v in student.state_dict().items()}
    if not cfg.update_bn_stats:
        state.update({k: v.cpu() for k, v in keep.items()})
    metrics = {
        "zdas-samples": float(len(y)),
        "zdas-inv-seconds": inv_seconds,
        "zdas-teacher-acc": acc,
        "zdas-bn-loss": bn_loss,
        "zdas-warm-fraction": warm_sum,
        "zdas-finetune-steps": float(steps),
        "zdas-finetune-loss": loss_sum / max(steps, 1),
        "zdas-seconds": time.perf_counter() - t0,
    }
    return ZdasOutcome(state, x, y, metrics)
