"""The usual loss terms for :func:`fedcore.training.train_steps`, and the two trainings built
from them: a client update on its :class:`LocalData` (:func:`train_local`) and the plain
objective over one sample set (:func:`sgd_train`, ZDAS's fine-tuning).

An :class:`ObjectiveTerm` is ``weight * (ce_weight * CE + kd_weight * KD)`` on one source's
rows of a batch: the cross-entropy over the logits after the term's logit adjustments
(weighted per sample when the samples carry weights), and distillation toward the samples'
teacher logits where they have them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from fedcore.training import (
    Batch,
    LogitAdjust,
    Samples,
    Source,
    Term,
    TrainConfig,
    TrainStats,
    as_tensors,
    train_steps,
)

OWN = "own"  # the source name of a client's own samples


@dataclass(frozen=True)
class Objective:
    """``ce_weight * CE + kd_weight * T^2 * KL(teacher || student)`` at temperature ``T``."""

    ce_weight: float = 1.0
    kd_weight: float = 0.0
    temperature: float = 1.0


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


def objective_loss(
    logits: torch.Tensor,
    y: torch.Tensor,
    idx: torch.Tensor,
    data: Samples,
    obj: Objective,
    adjust: Sequence[LogitAdjust] = (),
) -> torch.Tensor:
    """``obj`` on the samples ``idx`` of ``data`` (their ``logits`` and labels ``y``)."""
    device = logits.device
    ce_logits = logits
    if adjust:
        origin = data.origin_of(idx).to(device)
        for f in adjust:
            ce_logits = f(ce_logits, origin)
    if data.weights is None:
        loss = obj.ce_weight * F.cross_entropy(ce_logits, y)
    else:
        wb = data.weights[idx].to(device)
        ce = F.cross_entropy(ce_logits, y, reduction="none")
        loss = obj.ce_weight * (ce * wb).sum() / wb.sum()
    if obj.kd_weight > 0 and data.teacher_logits is not None:
        sel = (
            data.distill[idx]
            if data.distill is not None
            else torch.ones_like(idx, dtype=torch.bool)
        )
        if sel.any():
            target = data.teacher_logits[idx][sel].to(device)
            kd = distillation_loss(logits[sel.to(device)], target, obj.temperature)
            loss = loss + obj.kd_weight * kd
    return loss


@dataclass
class ObjectiveTerm:
    """``weight`` times :func:`objective_loss` on the rows of source ``part``. ``adjust`` is
    read at every batch, so a hook may still add to it."""

    part: str
    objective: Objective = Objective()
    weight: float = 1.0
    adjust: list[LogitAdjust] = field(default_factory=list)

    def __call__(self, batch: Batch) -> torch.Tensor:
        p = batch.parts[self.part]
        logits, y = batch.logits[p.rows], batch.y[p.rows]
        return self.weight * objective_loss(
            logits, y, p.idx, p.samples, self.objective, self.adjust
        )


@dataclass
class LocalData:
    """What a client update trains on: sample sources (the client's own first, under
    :data:`OWN`), how many samples are its own, and the loss terms over them (``own``: the
    cross-entropy on its own samples, which a hook may reweigh or adjust)."""

    sources: dict[str, Source]
    num_real: int
    own: ObjectiveTerm = field(default_factory=lambda: ObjectiveTerm(OWN))
    terms: list[Term] = field(default_factory=list)  # after ``own``, in the order added

    @classmethod
    def real(cls, dataset: Dataset) -> LocalData:
        """The client's own data: every sample weighs 1."""
        x, y = as_tensors(dataset)
        return cls({OWN: Source(Samples(x, y, torch.ones(int(y.shape[0]))))}, int(y.shape[0]))

    @property
    def own_samples(self) -> Samples:
        return self.sources[OWN].samples

    def loss(self) -> list[Term]:
        """Every term of the batch loss, ``own`` first."""
        return [self.own, *self.terms]


def train_local(
    model: nn.Module,
    data: LocalData | Dataset,
    cfg: TrainConfig,
    *,
    device: torch.device | str = "cpu",
    seed: int = 0,
    extra_terms: Sequence[Term] = (),
    grad_correction: list[torch.Tensor] | None = None,
) -> TrainStats:
    """A client update: SGD on ``data`` (a plain dataset: every sample weighing 1) with its
    terms and ``extra_terms`` (regularisers, added last); ``num_examples`` counts the
    client's own samples."""
    data = data if isinstance(data, LocalData) else LocalData.real(data)
    stats = train_steps(
        model, data.sources, [*data.loss(), *extra_terms], cfg, device=device, seed=seed,
        grad_correction=grad_correction,
    )  # fmt: skip
    stats.num_examples = data.num_real
    return stats


def sgd_train(
    model: nn.Module,
    data: Samples,
    cfg: TrainConfig,
    objective: Objective = Objective(),
    *,
    device: torch.device | str = "cpu",
    seed: int = 0,
    bn_train: bool = True,
) -> TrainStats:
    """``objective`` over ``data`` alone (see :func:`fedcore.training.train_steps`)."""
    return train_steps(
        model, {"samples": Source(data)}, [ObjectiveTerm("samples", objective)], cfg,
        device=device, seed=seed, bn_train=bn_train,
    )  # fmt: skip
