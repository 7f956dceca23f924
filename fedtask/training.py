"""Local training and evaluation loops: the transport-free core every runner calls.

``train_local`` is FedAvg's client update; FedProx adds ``prox_mu``; SCAFFOLD adds a
gradient correction; ZDAC adds synthetic samples with their own loss weight and optional
distillation from a teacher. One loop serves them all.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from fedtask.data import ArrayDataset


@dataclass(frozen=True)
class TrainConfig:
    """Client optimiser settings (SGD)."""

    local_epochs: int = 1
    batch_size: int = 32
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0


@dataclass
class TrainStats:
    """What one local update did."""

    num_examples: int
    steps: int
    loss: float
    seconds: float


@dataclass
class Synthetic:
    """Synthetic inputs with labels, mixed into local training with weight ``weight``.

    When ``teacher`` is given, the loss on synthetic samples also includes
    ``kd_weight * T^2 * KL(teacher || student)`` at temperature ``temperature``.
    """

    x: torch.Tensor
    y: torch.Tensor
    weight: float = 1.0
    teacher: nn.Module | None = None
    kd_weight: float = 0.0
    temperature: float = 1.0


def as_tensors(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """All of a dataset as ``(x, y)`` tensors (direct for ArrayDataset, one pass otherwise)."""
    if isinstance(dataset, ArrayDataset):
        return dataset.x, dataset.y
    xs, ys = zip(*DataLoader(dataset, batch_size=1024), strict=True)
    return torch.cat(xs), torch.cat(ys).long()


def iterate_batches(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator | None
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield ``(x, y, index)`` batches; shuffled when ``generator`` is given."""
    n = y.shape[0]
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        yield x[idx], y[idx], idx


def proximal_term(model: nn.Module, anchor: list[torch.Tensor]) -> torch.Tensor:
    """``0.5 * ||w - w_global||^2`` over trainable parameters (FedProx; scaled by mu outside)."""
    return 0.5 * sum((p - a).pow(2).sum() for p, a in zip(model.parameters(), anchor, strict=True))


def train_local(
    model: nn.Module,
    dataset: Dataset,
    cfg: TrainConfig,
    *,
    device: torch.device | str = "cpu",
    seed: int = 0,
    prox_mu: float = 0.0,
    grad_correction: list[torch.Tensor] | None = None,
    synthetic: Synthetic | None = None,
) -> TrainStats:
    """Train ``model`` in place with SGD on ``dataset`` (plus optional synthetic samples).

    ``prox_mu`` adds FedProx's proximal term towards the starting weights;
    ``grad_correction`` (one tensor per parameter) is added to every gradient (SCAFFOLD's
    ``c - c_i``); ``synthetic`` samples are shuffled in with the real ones and weighted.
    """
    t0 = time.perf_counter()
    device = torch.device(device)
    model.to(device).train()
    x_real, y_real = as_tensors(dataset)
    n_real = int(y_real.shape[0])
    weights = torch.ones(n_real)
    x, y = x_real, y_real
    if synthetic is not None and synthetic.y.numel() > 0:
        x = torch.cat([x_real, synthetic.x.detach().to(x_real.dtype).cpu()])
        y = torch.cat([y_real, synthetic.y.long().cpu()])
        weights = torch.cat([weights, torch.full((synthetic.y.numel(),), synthetic.weight)])
    is_syn = torch.arange(y.shape[0]) >= n_real
    teacher = synthetic.teacher if synthetic is not None else None
    if teacher is not None:
        teacher.to(device).eval()

    opt = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    anchor = [p.detach().clone() for p in model.parameters()] if prox_mu > 0 else None
    corr = [c.to(device) for c in grad_correction] if grad_correction is not None else None
    gen = torch.Generator().manual_seed(seed)
    total, steps = 0.0, 0
    for _ in range(cfg.local_epochs):
        for xb, yb, idx in iterate_batches(x, y, cfg.batch_size, gen):
            if yb.shape[0] < 2:  # BatchNorm cannot train on a single sample
                continue
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            wb = weights[idx].to(device)
            logits = model(xb)
            loss = (F.cross_entropy(logits, yb, reduction="none") * wb).sum() / wb.sum()
            if teacher is not None and synthetic is not None and synthetic.kd_weight > 0:
                sel = is_syn[idx].to(device)
                if sel.any():
                    loss = loss + synthetic.kd_weight * distillation_loss(
                        logits[sel], teacher(xb[sel]), synthetic.temperature
                    )
            if anchor is not None:
                loss = loss + prox_mu * proximal_term(model, anchor)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if corr is not None:
                for p, c in zip(model.parameters(), corr, strict=True):
                    p.grad.add_(c)
            opt.step()
            total += float(loss.detach())
            steps += 1
    return TrainStats(n_real, steps, total / max(steps, 1), time.perf_counter() - t0)


def distillation_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Hinton distillation: ``T^2 * KL(softmax(t/T) || softmax(s/T))``, batch mean."""
    t = temperature
    return F.kl_div(
        F.log_softmax(student_logits / t, dim=1),
        F.softmax(teacher_logits.detach() / t, dim=1),
        reduction="batchmean",
    ) * (t * t)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Dataset,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 1024,
    num_classes: int | None = None,
) -> dict[str, float | list[float]]:
    """Accuracy and mean cross-entropy of ``model`` on ``dataset`` (eval mode).

    With ``num_classes`` the result also holds ``per_class_accuracy`` (NaN for absent classes).
    """
    device = torch.device(device)
    model.to(device).eval()
    x, y = as_tensors(dataset)
    correct, loss_sum = 0, 0.0
    preds = []
    for xb, yb, _ in iterate_batches(x, y, batch_size, None):
        xb, yb = xb.to(device), yb.to(device)
        logits = model(xb)
        loss_sum += float(F.cross_entropy(logits, yb, reduction="sum"))
        p = logits.argmax(1)
        correct += int((p == yb).sum())
        preds.append(p.cpu())
    n = max(int(y.shape[0]), 1)
    out: dict[str, float | list[float]] = {"accuracy": correct / n, "loss": loss_sum / n}
    if num_classes is not None and preds:
        hit = (torch.cat(preds) == y).float()
        counts = torch.bincount(y, minlength=num_classes).float()
        hits = torch.bincount(y, weights=hit, minlength=num_classes)
        out["per_class_accuracy"] = (hits / counts).tolist()
    return out
