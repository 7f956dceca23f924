"""DeepInversion-style model inversion: optimise inputs until a classifier labels them as
chosen targets while their BatchNorm statistics match the model's running statistics.

Loss per step (all weights are :class:`InversionConfig` fields)::

    ce * CE(f(x'), y)
  + bn * sum_l m_l * (||mu_l(x') - running_mean_l||_2 + ||var_l(x') - running_var_l||_2)
  + tv_l1 * TV_L1(x) + tv_l2 * TV_L2(x) + l2 * mean(x^2)
  + adi * (1 - JS(teacher(x') || student(x')))          (only with a student)

with ``x'`` = ``x`` randomly jittered and flipped, ``m_1 = first_bn_multiplier`` and
``m_l = 1`` otherwise. With ``context`` (fixed inputs, e.g. real samples of the classes a
client holds) the BatchNorm statistics are those of ``x'`` and the context together, so a
batch of a few classes is matched against statistics of all classes as a whole. Adam with
a cosine learning-rate schedule; every batch is optimised at once and BN layers are hooked
once per call.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from inversion.priors import jitter_flip, l2_prior, pixel_bounds, tv_l1, tv_l2


class InputSpec(Protocol):
    """What inversion needs to know of the inputs (``fedcore.data.DataSpec`` is one)."""

    @property
    def input_shape(self) -> Sequence[int]: ...
    @property
    def mean(self) -> Sequence[float]: ...
    @property
    def std(self) -> Sequence[float]: ...


@dataclass(frozen=True)
class InversionConfig:
    """Every weight, step count and learning rate of the inversion."""

    steps: int = 100  # steps when starting from noise (cold start)
    warm_steps: int = 5  # steps when refining samples from a bank (warm start)
    lr: float = 0.1  # Adam learning rate on the inputs, cosine-annealed over the steps
    batch_size: int = 256  # samples optimised together (one BN-statistics batch)
    ce: float = 1.0  # weight of the cross-entropy towards the target labels
    bn: float = 1.0  # weight of matching BatchNorm running statistics
    first_bn_multiplier: float = 10.0  # factor on the first BatchNorm layer's term
    tv_l1: float = 0.0  # weight of the absolute-difference total variation prior
    tv_l2: float = 1e-4  # weight of the squared-difference total variation prior
    l2: float = 1e-5  # weight of the mean squared input prior
    adi: float = 0.0  # weight of 1 - JS(model || student); ZDAS only (student: the average)
    adi_temperature: float = 3.0  # softmax temperature of that JS divergence
    jitter: int = 2  # random roll of up to this many pixels each step (0: off)
    flip: bool = False  # random horizontal flips; off by default (Fashion-MNIST items are oriented)

    def problems(self, prefix: str) -> list[str]:
        """Every invalid setting, as ``prefix + key: what is wrong`` messages."""
        checks = [
            (self.steps >= 0 and self.warm_steps >= 0, "steps/warm_steps: must be >= 0"),
            (self.lr > 0, f"lr: must be > 0, got {self.lr}"),
            (self.batch_size >= 2, "batch_size: must be >= 2 (BatchNorm statistics)"),
        ]
        for k in ("ce", "bn", "first_bn_multiplier", "tv_l1", "tv_l2", "l2", "adi"):
            checks.append((getattr(self, k) >= 0, f"{k}: must be >= 0, got {getattr(self, k)}"))
        checks += [
            (self.adi_temperature > 0, "adi_temperature: must be > 0"),
            (self.jitter >= 0, "jitter: must be >= 0"),
        ]
        return [prefix + msg for ok, msg in checks if not ok]


@dataclass
class InversionResult:
    """Synthetic samples (normalised input space), their labels and diagnostics."""

    x: torch.Tensor
    y: torch.Tensor
    teacher_accuracy: float
    bn_loss_start: float
    bn_loss_end: float
    seconds: float
    steps: int
    sample_steps_per_s: float


class BNStatsLoss:
    """Forward hooks on every BatchNorm layer (with running statistics) that accumulate the
    statistics-matching loss.

    Two shortcuts keep an inversion step as cheap as a training step, with the same values:
    the batch statistics come from two per-channel sums of ``x - running_mean`` (one pass
    forward, one elementwise pass backward, where ``mean``/``var`` take several), and the
    eval-mode BatchNorm output is replaced by the equivalent per-channel affine map, whose
    backward is one multiply (PyTorch's BatchNorm backward on CPU costs several times that).
    """

    def __init__(self, model: nn.Module, first_multiplier: float) -> None:
        self.layers = [
            m
            for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None
        ]
        self.terms: list[torch.Tensor] = []
        self.weights = [first_multiplier] + [1.0] * (len(self.layers) - 1)
        self.handles = [layer.register_forward_hook(self._hook) for layer in self.layers]

    def _hook(
        self, module: nn.modules.batchnorm._BatchNorm, inputs: tuple[torch.Tensor, ...], _out
    ) -> torch.Tensor:
        x = inputs[0]
        shape = [1, -1] + [1] * (x.dim() - 2)
        dims = [0, *range(2, x.dim())]
        n = x.numel() // x.shape[1]
        rm, rv = module.running_mean, module.running_var
        assert rm is not None and rv is not None  # only layers that track statistics
        d = x - rm.view(shape)
        mean_gap = d.sum(dims) / n  # batch mean - running mean
        var = (d * d).sum(dims) / n - mean_gap * mean_gap
        self.terms.append(torch.linalg.vector_norm(mean_gap) + torch.linalg.vector_norm(var - rv))
        scale = torch.rsqrt(rv + module.eps)
        if module.weight is not None:
            scale = scale * module.weight
        shift = -rm * scale
        if module.bias is not None:
            shift = shift + module.bias
        return torch.addcmul(shift.view(shape), x, scale.view(shape))

    def pop(self) -> torch.Tensor:
        """The weighted loss of the last forward pass (resets the accumulator)."""
        if not self.terms:
            return torch.zeros(())
        loss = sum(w * t for w, t in zip(self.weights, self.terms, strict=False))
        self.terms = []
        return loss  # type: ignore[return-value]

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def js_divergence(p_logits: torch.Tensor, q_logits: torch.Tensor, t: float) -> torch.Tensor:
    """Jensen–Shannon divergence between two softmax distributions at temperature ``t``."""
    p, q = F.softmax(p_logits / t, dim=1), F.softmax(q_logits / t, dim=1)
    m = (0.5 * (p + q)).clamp_min(1e-8).log()
    return 0.5 * (F.kl_div(m, p, reduction="batchmean") + F.kl_div(m, q, reduction="batchmean"))


@dataclass
class _Batches:
    """What every batch of one inversion shares."""

    model: nn.Module
    cfg: InversionConfig
    bn: BNStatsLoss
    steps: int
    gen: torch.Generator
    bounds: tuple[torch.Tensor, torch.Tensor]
    student: nn.Module | None


@contextmanager
def _frozen(model: nn.Module, student: nn.Module | None, device: torch.device) -> Iterator[None]:
    """``model`` (and ``student``) in eval mode on ``device``, the model's weights without
    gradients; its mode and ``requires_grad`` flags restored afterwards."""
    was_training = model.training
    model.to(device).eval()
    if student is not None:
        student.to(device).eval()
    requires = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, r in zip(model.parameters(), requires, strict=True):
            p.requires_grad_(r)
        model.train(was_training)


def _step_loss(
    run: _Batches, xb: torch.Tensor, xj: torch.Tensor, yb: torch.Tensor, logits: torch.Tensor,
    bn_loss: torch.Tensor,
) -> torch.Tensor:  # fmt: skip
    """Cross-entropy, BN statistics, image priors and (with a student) the ADI term."""
    cfg = run.cfg
    loss = cfg.ce * F.cross_entropy(logits, yb) + cfg.bn * bn_loss
    loss = loss + cfg.tv_l1 * tv_l1(xb) + cfg.tv_l2 * tv_l2(xb) + cfg.l2 * l2_prior(xb)
    if run.student is not None and cfg.adi > 0:
        js = js_divergence(logits, run.student(xj), cfg.adi_temperature)
        loss = loss + cfg.adi * (1.0 - js.clamp(0.0, 1.0))
    return loss


def _invert_batch(
    run: _Batches, xb: torch.Tensor, yb: torch.Tensor, ctx: torch.Tensor | None
) -> tuple[torch.Tensor, float, float, float]:
    """Optimise one batch; its inputs, correct count, and BN loss at the start and end."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        """Logits of ``x``, forwarded beside the context rows (BN statistics only)."""
        return run.model(x if ctx is None else torch.cat([x, ctx]))[: len(x)]

    cfg, (lo, hi) = run.cfg, run.bounds
    opt = torch.optim.Adam([xb], lr=cfg.lr, betas=(0.5, 0.9))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(run.steps, 1))
    bn_start = 0.0
    for step in range(run.steps):
        xj = jitter_flip(xb, cfg.jitter, cfg.flip, run.gen)
        logits = forward(xj)
        bn_loss = run.bn.pop()
        loss = _step_loss(run, xb, xj, yb, logits, bn_loss)
        if step == 0:
            bn_start = float(bn_loss.detach())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            xb.clamp_(lo, hi)
    with torch.no_grad():
        logits = forward(xb)
        bn_end = float(run.bn.pop())
        correct = (logits.argmax(1) == yb).float().sum().item()
    return xb.detach().cpu(), correct, bn_start if run.steps else bn_end, bn_end


def invert(
    model: nn.Module,
    labels: torch.Tensor,
    cfg: InversionConfig,
    spec: InputSpec,
    *,
    init: torch.Tensor | None = None,
    steps: int | None = None,
    student: nn.Module | None = None,
    context: torch.Tensor | None = None,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> InversionResult:
    """Synthesise one input per entry of ``labels`` from ``model`` (left unchanged).

    ``init`` (same shape as the output) warm-starts the optimisation; otherwise inputs
    start from N(0, 1) noise. ``steps`` defaults to ``cfg.steps`` (cold) or
    ``cfg.warm_steps`` (with ``init``). ``context`` rows are forwarded with every batch
    (never optimised, no cross-entropy), as many per batch as its share of a full batch:
    ``len(context) * len(batch) / batch_size``, so a full batch takes all of them.
    """
    t0 = time.perf_counter()
    device = torch.device(device)
    n = int(labels.numel())
    shape = (n, *spec.input_shape)
    steps = steps if steps is not None else (cfg.warm_steps if init is not None else cfg.steps)
    gen = torch.Generator().manual_seed(seed)
    if init is not None and tuple(init.shape) != shape:
        raise ValueError(f"init has shape {tuple(init.shape)}, expected {shape}")
    x_all = init.detach().clone() if init is not None else torch.randn(shape, generator=gen)
    y_all = labels.long().cpu()
    if context is not None and tuple(context.shape[1:]) != shape[1:]:
        raise ValueError(
            f"context rows have shape {tuple(context.shape[1:])}, expected {shape[1:]}"
        )
    ctx_all = context.detach().to(device) if context is not None else None
    bounds = pixel_bounds(spec.mean, spec.std, device)
    with _frozen(model, student, device):
        bn = BNStatsLoss(model, cfg.first_bn_multiplier)
        if not bn.layers and cfg.bn > 0:
            warnings.warn(
                f"{type(model).__name__} has no BatchNorm layers: inverting with the "
                "cross-entropy and image priors only",
                stacklevel=2,
            )
        run = _Batches(model, cfg, bn, steps, gen, bounds, student)
        try:
            outs, bn_start, bn_end = _invert_all(run, x_all, y_all, ctx_all, device)
        finally:
            bn.remove()
    x = torch.cat([o[0] for o in outs]) if outs else torch.empty(shape)
    seconds = time.perf_counter() - t0
    return InversionResult(
        x=x,
        y=y_all,
        teacher_accuracy=sum(o[1] for o in outs) / max(n, 1),
        bn_loss_start=bn_start,
        bn_loss_end=bn_end,
        seconds=seconds,
        steps=steps,
        sample_steps_per_s=n * steps / seconds if seconds > 0 else 0.0,
    )


def _invert_all(
    run: _Batches,
    x_all: torch.Tensor,
    y_all: torch.Tensor,
    ctx_all: torch.Tensor | None,
    device: torch.device,
) -> tuple[list[tuple[torch.Tensor, float]], float, float]:
    """Every batch of ``x_all`` through ``run`` (each with its share of the context rows):
    the batches' samples and correct counts, and the BN loss at the first and the last step,
    weighted by batch size."""
    n, size = len(y_all), run.cfg.batch_size
    bn_start, bn_end, outs = 0.0, 0.0, []
    for start in range(0, n, size):
        xb = x_all[start : start + size].to(device).requires_grad_(True)
        yb = y_all[start : start + size].to(device)
        ctx = None
        if ctx_all is not None and len(ctx_all):
            ctx = ctx_all[: max(1, round(len(ctx_all) * len(yb) / size))]
        x, correct, first, last = _invert_batch(run, xb, yb, ctx)
        bn_start += first * yb.numel() / n
        bn_end += last * yb.numel() / n
        outs.append((x, correct))
    return outs, bn_start, bn_end
