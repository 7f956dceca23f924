"""The one SGD loop (client updates and server fine-tuning) and evaluation.

:func:`sgd_train` trains on labelled samples with optional per-sample weights, teacher
logits (distillation) and a second sample set drawn beside every batch; what algorithms add
to a client's loss plugs in generically: logit adjustments used by the cross-entropy
(FedLC), loss terms on the outputs (given logits, labels and each sample's origin), weight
regularisers (FedProx) and gradient corrections (SCAFFOLD). :func:`train_local` is the
client update on a :class:`LocalData`; ZDAS fine-tunes with the same loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from fedcore.data import ArrayDataset
from fedcore.vision import AUGMENTATIONS, augmenter


@dataclass(frozen=True)
class TrainConfig:
    """Client optimiser settings (SGD)."""

    local_epochs: int = 1  # passes over the client's data per round
    batch_size: int = 32  # client SGD batch size (>= 2; a last batch of 1 is skipped)
    lr: float = 0.01  # client SGD learning rate
    momentum: float = 0.9  # client SGD momentum, in [0, 1)
    weight_decay: float = 0.0  # client SGD weight decay (L2; 0: none)
    augment: str = "none"  # "none" or "crop-flip": CIFAR's random padded crop + flip of every batch

    def problems(self, prefix: str) -> list[str]:
        """Every invalid setting, as ``prefix + key: what is wrong`` messages."""
        checks = [
            (self.local_epochs >= 1, f"local_epochs: must be >= 1, got {self.local_epochs}"),
            (self.batch_size >= 2, f"batch_size: must be >= 2 (BatchNorm), got {self.batch_size}"),
            (self.lr > 0, f"lr: must be > 0, got {self.lr}"),
            (0 <= self.momentum < 1, f"momentum: must be in [0, 1), got {self.momentum}"),
            (self.weight_decay >= 0, "weight_decay: must be >= 0"),
            (self.augment in AUGMENTATIONS, f"augment: {self.augment!r} not in {AUGMENTATIONS}"),
        ]
        return [prefix + msg for ok, msg in checks if not ok]


@dataclass
class TrainStats:
    """What one local update did."""

    num_examples: int
    steps: int
    loss: float
    seconds: float


REAL, SYNTHETIC = 0, 1  # a sample's origin, as loss terms and logit adjustments see it


@dataclass
class Samples:
    """Labelled inputs for :func:`sgd_train`.

    ``weights`` scale each sample's cross-entropy (None: the plain batch mean);
    ``teacher_logits`` (rows where ``distill`` is True) are distillation targets;
    ``origin`` marks each sample's source (:data:`REAL` or :data:`SYNTHETIC`; None: all
    ``default_origin``).
    """

    x: torch.Tensor
    y: torch.Tensor
    weights: torch.Tensor | None = None
    teacher_logits: torch.Tensor | None = None
    distill: torch.Tensor | None = None
    origin: torch.Tensor | None = None
    default_origin: int = REAL

    def origin_of(self, idx: torch.Tensor) -> torch.Tensor:
        """The origin of the samples at ``idx``."""
        if self.origin is None:
            return torch.full((idx.shape[0],), self.default_origin, dtype=torch.long)
        return self.origin[idx]


@dataclass(frozen=True)
class Objective:
    """``ce_weight * CE + kd_weight * T^2 * KL(teacher || student)`` at temperature ``T``."""

    ce_weight: float = 1.0
    kd_weight: float = 0.0
    temperature: float = 1.0


@dataclass
class Paired:
    """A second sample set drawn alongside every batch of :func:`sgd_train`'s main data."""

    data: Samples
    batch_size: int
    weight: float = 1.0
    main_weight: float = 1.0
    objective: Objective = Objective()

    def batches(self, generator: torch.Generator) -> Iterator[torch.Tensor]:
        """Index batches of ``batch_size``, reshuffled each time the set is used up."""
        n = self.data.y.shape[0]
        while True:
            order = torch.randperm(n, generator=generator)
            for start in range(0, max(n - self.batch_size + 1, 1), self.batch_size):
                yield order[start : start + self.batch_size]


Regularizer = Callable[[nn.Module], torch.Tensor]  # model -> loss added to every batch
LogitAdjust = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, origin) -> logits
OutputTerm = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (z, y, origin)


@dataclass
class LocalData:
    """What a client update trains on: the main samples with their objective, an optional
    second set drawn beside every batch, and how many samples are the client's own."""

    samples: Samples
    num_real: int
    objective: Objective = Objective()
    paired: Paired | None = None

    @classmethod
    def real(cls, dataset: Dataset) -> LocalData:
        """The client's own data: every sample weighs 1."""
        x, y = as_tensors(dataset)
        return cls(Samples(x, y, torch.ones(int(y.shape[0]))), int(y.shape[0]))


@dataclass
class LossTerms:
    """What client hooks add to every batch loss (see :func:`sgd_train`)."""

    logit_adjust: list[LogitAdjust] = field(default_factory=list)
    output_terms: list[OutputTerm] = field(default_factory=list)
    regularizers: list[Regularizer] = field(default_factory=list)


def as_tensors(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """All of a dataset as ``(x, y)`` tensors (direct for ArrayDataset, one pass otherwise;
    a compact ArrayDataset normalises every row: meant for a client's partition, not a
    whole split)."""
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


def _batch_loss(
    logits: torch.Tensor,
    yb: torch.Tensor,
    idx: torch.Tensor,
    data: Samples,
    obj: Objective,
    adjust: Sequence[LogitAdjust] = (),
) -> torch.Tensor:
    device = logits.device
    ce_logits = logits
    if adjust:
        origin = data.origin_of(idx).to(device)
        for f in adjust:
            ce_logits = f(ce_logits, origin)
    if data.weights is None:
        loss = obj.ce_weight * F.cross_entropy(ce_logits, yb)
    else:
        wb = data.weights[idx].to(device)
        ce = F.cross_entropy(ce_logits, yb, reduction="none")
        loss = obj.ce_weight * (ce * wb).sum() / wb.sum()
    if obj.kd_weight > 0 and data.teacher_logits is not None:
        sel = (
            data.distill[idx]
            if data.distill is not None
            else torch.ones_like(idx, dtype=torch.bool)
        )
        if sel.any():
            target = data.teacher_logits[idx][sel].to(device)
            loss = loss + obj.kd_weight * distillation_loss(
                logits[sel.to(device)], target, obj.temperature
            )
    return loss


def sgd_train(
    model: nn.Module,
    data: Samples,
    cfg: TrainConfig,
    objective: Objective = Objective(),
    *,
    device: torch.device | str = "cpu",
    seed: int = 0,
    terms: LossTerms | None = None,
    grad_correction: list[torch.Tensor] | None = None,
    bn_train: bool = True,
    paired: Paired | None = None,
) -> TrainStats:
    """Train ``model`` in place: ``cfg.local_epochs`` shuffled passes of SGD over ``data``
    (each batch augmented first when ``cfg.augment`` asks).

    With ``paired``, each batch is forwarded together with a batch of ``paired.data`` and
    the two losses are weighted. ``terms``: the cross-entropy uses the logits after every
    ``logit_adjust``; every ``output_terms(logits, labels, origin)`` and
    ``regularizers(model)`` is added to the batch loss. ``grad_correction`` (one tensor per
    parameter) is added to every gradient. With ``bn_train`` off, BatchNorm normalises with
    its running statistics (eval mode) and leaves them unchanged.
    """
    t0 = time.perf_counter()
    device = torch.device(device)
    terms = terms or LossTerms()
    model.to(device).train(bn_train)
    opt = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    corr = [c.to(device) for c in grad_correction] if grad_correction is not None else None
    gen = torch.Generator().manual_seed(seed)
    extra = paired.batches(torch.Generator().manual_seed(seed + 1)) if paired else None
    augment = augmenter(cfg.augment, tuple(data.x.shape[1:])) if cfg.augment != "none" else None
    adjust = terms.logit_adjust
    total, steps = 0.0, 0
    for _ in range(cfg.local_epochs):
        for xb, yb, idx in iterate_batches(data.x, data.y, cfg.batch_size, gen):
            if yb.shape[0] < 2:  # BatchNorm cannot train on a single sample
                continue
            if augment is not None:
                xb = augment(xb)
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            if paired is None or extra is None:
                logits = model(xb)
                loss = _batch_loss(logits, yb, idx, data, objective, adjust)
                if terms.output_terms:
                    origin = data.origin_of(idx).to(device)
            else:
                pidx = next(extra)
                px = paired.data.x[pidx].to(device, non_blocking=True)
                py = paired.data.y[pidx].to(device, non_blocking=True)
                logits = model(torch.cat([xb, px]))
                n = yb.shape[0]
                loss = paired.main_weight * _batch_loss(
                    logits[:n], yb, idx, data, objective, adjust
                ) + paired.weight * _batch_loss(
                    logits[n:], py, pidx, paired.data, paired.objective, adjust
                )
                if terms.output_terms:
                    yb = torch.cat([yb, py])
                    origin = torch.cat([data.origin_of(idx), paired.data.origin_of(pidx)])
                    origin = origin.to(device)
            for term in terms.output_terms:
                loss = loss + term(logits, yb, origin)
            for reg in terms.regularizers:
                loss = loss + reg(model)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if corr is not None:
                for p, c in zip(model.parameters(), corr, strict=True):
                    if p.grad is not None:
                        p.grad.add_(c)
            opt.step()
            total += float(loss.detach())
            steps += 1
    return TrainStats(len(data.y), steps, total / max(steps, 1), time.perf_counter() - t0)


def train_local(
    model: nn.Module,
    data: LocalData | Dataset,
    cfg: TrainConfig,
    *,
    device: torch.device | str = "cpu",
    seed: int = 0,
    terms: LossTerms | None = None,
    grad_correction: list[torch.Tensor] | None = None,
) -> TrainStats:
    """A client update: SGD on ``data`` (a plain dataset: every sample weighing 1);
    ``num_examples`` counts the client's own samples."""
    data = data if isinstance(data, LocalData) else LocalData.real(data)
    stats = sgd_train(
        model, data.samples, cfg, data.objective, device=device, seed=seed, terms=terms,
        grad_correction=grad_correction, paired=data.paired,
    )  # fmt: skip
    stats.num_examples = data.num_real
    return stats


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
    if isinstance(dataset, ArrayDataset) and dataset.pixels is not None:
        y = dataset.y  # compact: normalise one batch at a time, never the whole set
        batches: Iterator[tuple[torch.Tensor, torch.Tensor]] = (
            dataset[start : start + batch_size] for start in range(0, len(dataset), batch_size)
        )
    else:
        x, y = as_tensors(dataset)
        batches = ((xb, yb) for xb, yb, _ in iterate_batches(x, y, batch_size, None))
    correct, loss_sum = 0, 0.0
    preds = []
    for xb, yb in batches:
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
