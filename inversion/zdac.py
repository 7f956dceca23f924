"""ZDAC, the client side of Fed-ZDA: invert the received global model into synthetic
samples that balance this client's class mix, for training on real + synthetic data."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from fedtask.training import Synthetic
from inversion.allocation import allocate, labels_for
from inversion.engine import InversionConfig
from inversion.pool import SyntheticPool, invert_with_pool


@dataclass(frozen=True)
class ZdacConfig:
    """Client-side inversion and augmentation settings."""

    start_round: int = 2  # a random model inverts to nothing useful
    allocation: str = "complement"
    budget: float = 0.1  # ratio of local data if < 1, else a sample count
    synthetic_weight: float = 1.0
    kd_weight: float = 0.0  # distillation from the global model on synthetic samples
    kd_temperature: float = 3.0
    pool_max_age: int = 5  # rounds before a pool is stale and inversion restarts from noise
    preview_client: int = 0  # this partition sends a few samples for the server's image grid
    inversion: InversionConfig = field(default_factory=InversionConfig)


@dataclass
class ZdacOutcome:
    """What the client trains with, plus diagnostics for its metrics."""

    synthetic: Synthetic | None
    metrics: dict[str, float]


def zdac_augment(
    global_model: nn.Module,
    label_counts: np.ndarray,
    cfg: ZdacConfig,
    pool: SyntheticPool,
    server_round: int,
    *,
    input_shape: tuple[int, ...],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    device: torch.device | str = "cpu",
    seed: int = 0,
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
    }
    if server_round < cfg.start_round:
        return ZdacOutcome(None, metrics)
    per_class = allocate(cfg.allocation, label_counts, cfg.budget)
    if per_class.sum() == 0:
        return ZdacOutcome(None, metrics)
    labels = torch.from_numpy(labels_for(per_class))
    res, warm = invert_with_pool(
        global_model,
        labels,
        cfg.inversion,
        pool,
        server_round,
        cfg.pool_max_age,
        input_shape=input_shape,
        mean=mean,
        std=std,
        device=device,
        seed=seed,
    )
    teacher = copy.deepcopy(global_model).eval() if cfg.kd_weight > 0 else None
    metrics.update(
        {
            "syn-count": float(len(res.y)),
            "inv-seconds": res.seconds,
            "inv-teacher-acc": res.teacher_accuracy,
            "inv-bn-loss": res.bn_loss_end,
            "inv-warm-fraction": warm,
        }
    )
    syn = Synthetic(res.x, res.y, cfg.synthetic_weight, teacher, cfg.kd_weight, cfg.kd_temperature)
    return ZdacOutcome(syn, metrics)
