"""The one SGD loop (client updates and server fine-tuning) and evaluation.

:func:`train_steps` knows no method: batches come from sample sources (the main one in
shuffled epochs, any other drawn beside every main batch), the loss is the sum of the
terms it is given, each seeing the whole :class:`Batch` (model, inputs, labels, logits,
each source's rows), and gradient corrections are added to every gradient. What an
algorithm adds (FedLC's logit adjustment, FedProx's proximal term, SCAFFOLD's correction,
ZDAC's synthetic samples, pairing and distillation) is a source, a term or a correction
it builds itself; the usual terms are in :mod:`fedcore.losses`. ZDAS fine-tunes with the
same loop (:func:`fedcore.losses.sgd_train`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from fedcore.data import ArrayDataset
from fedcore.seeds import OFFSET, derive_seed
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


def sgd_reach(steps: int, lr: float, momentum: float) -> float:
    """How far ``steps`` SGD steps move per unit of gradient: ``K lr / (1 - momentum)``
    (a step with momentum ``beta`` moves about ``lr / (1 - beta)`` times the gradient)."""
    return steps * lr / (1.0 - momentum)


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
    """Labelled inputs, with per-sample values that loss terms may read: ``weights`` (each
    sample's share of a weighted cross-entropy; None: the plain batch mean),
    ``teacher_logits`` (distillation targets, for rows where ``distill`` is True) and
    ``origin`` (:data:`REAL` or :data:`SYNTHETIC`; None: all ``default_origin``). The
    loop itself reads only ``x``, ``y`` and the origin."""

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


@dataclass
class Source:
    """Samples the loop draws batches from. The main source (``per_batch`` 0) is shuffled
    into epochs; any other gives ``per_batch`` samples beside every main batch, reshuffled
    each time it is used up."""

    samples: Samples
    per_batch: int = 0

    def batches(self, generator: torch.Generator) -> Iterator[torch.Tensor]:
        """Index batches of ``per_batch``, reshuffled each time the set is used up."""
        n = self.samples.y.shape[0]
        while True:
            order = torch.randperm(n, generator=generator)
            for start in range(0, max(n - self.per_batch + 1, 1), self.per_batch):
                yield order[start : start + self.per_batch]


@dataclass
class Part:
    """Where one source's samples sit in a batch: its rows and their indices in the source."""

    rows: slice
    idx: torch.Tensor
    samples: Samples


@dataclass
class Batch:
    """One SGD step as loss terms see it: the model, every source's samples concatenated
    (``x``, ``y`` on the device), the model's ``logits`` for them and each source's part."""

    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    logits: torch.Tensor
    parts: dict[str, Part]

    @property
    def origin(self) -> torch.Tensor:
        """Every row's origin (on the logits' device)."""
        o = [p.samples.origin_of(p.idx) for p in self.parts.values()]
        return (o[0] if len(o) == 1 else torch.cat(o)).to(self.logits.device)


Term = Callable[[Batch], torch.Tensor]  # one addend of a batch's loss
LogitAdjust = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, origin) -> logits


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


def _draws(
    sources: dict[str, Source], seed: int
) -> tuple[str, Source, list[tuple[str, Source, Iterator[torch.Tensor]]]]:
    """The main source (the first) and, for the others, their seeded index streams."""
    (main_name, main), *rest = sources.items()
    if main.per_batch or any(s.per_batch < 1 for _, s in rest):
        raise ValueError("the first source is the main one (per_batch 0), the others per_batch > 0")
    gens = [
        torch.Generator().manual_seed(derive_seed(seed, 1 + k, OFFSET)) for k in range(len(rest))
    ]
    return main_name, main, [(n, s, s.batches(g)) for (n, s), g in zip(rest, gens, strict=True)]


def _batch(
    model: nn.Module,
    main: tuple[str, Samples, torch.Tensor, torch.Tensor, torch.Tensor],
    extra: list[tuple[str, Source, Iterator[torch.Tensor]]],
    device: torch.device,
) -> Batch:
    """The step's inputs from every source, forwarded once."""
    name, samples, xb, yb, idx = main
    parts = {name: Part(slice(0, yb.shape[0]), idx, samples)}
    xs, ys = [xb], [yb]
    for other, src, draw in extra:
        pidx, start = next(draw), sum(t.shape[0] for t in ys)
        xs.append(src.samples.x[pidx].to(device, non_blocking=True))
        ys.append(src.samples.y[pidx].to(device, non_blocking=True))
        parts[other] = Part(slice(start, start + pidx.shape[0]), pidx, src.samples)
    x, y = (xb, yb) if len(xs) == 1 else (torch.cat(xs), torch.cat(ys))
    return Batch(model, x, y, model(x), parts)


def train_steps(
    model: nn.Module,
    sources: dict[str, Source],
    terms: Sequence[Term],
    cfg: TrainConfig,
    *,
    device: torch.device | str = "cpu",
    seed: int = 0,
    grad_correction: list[torch.Tensor] | None = None,
    bn_train: bool = True,
) -> TrainStats:
    """Train ``model`` in place: ``cfg.local_epochs`` shuffled passes of SGD over the main
    (first) source, each batch augmented when ``cfg.augment`` asks and joined by the other
    sources' samples; the loss is the sum of ``terms`` over the batch; ``grad_correction``
    (one tensor per parameter) is added to every gradient. With ``bn_train`` off, BatchNorm
    normalises with its running statistics (eval mode) and leaves them unchanged."""
    t0 = time.perf_counter()
    device = torch.device(device)
    model.to(device).train(bn_train)
    opt = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    corr = [c.to(device) for c in grad_correction] if grad_correction is not None else None
    gen = torch.Generator().manual_seed(seed)
    name, main, extra = _draws(sources, seed)
    data = main.samples
    augment = augmenter(cfg.augment, tuple(data.x.shape[1:])) if cfg.augment != "none" else None
    total, steps = 0.0, 0
    for _ in range(cfg.local_epochs):
        for xb, yb, idx in iterate_batches(data.x, data.y, cfg.batch_size, gen):
            if yb.shape[0] < 2:  # BatchNorm cannot train on a single sample
                continue
            if augment is not None:
                xb = augment(xb)
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            batch = _batch(model, (name, data, xb, yb, idx), extra, device)
            loss = terms[0](batch)
            for term in terms[1:]:
                loss = loss + term(batch)
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
