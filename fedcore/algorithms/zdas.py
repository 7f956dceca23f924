"""ZDAS, the server side of Fed-ZDA: invert every client model into synthetic samples
(:func:`zdas_invert`), and fine-tune the averaged model on them (:func:`zdas_finetune`:
cross-entropy on the inversion labels, optionally distillation from the client ensemble
weighted per class).

Warm starts (``zdas.bank``): one bank per client, refined when that client's next model
arrives (``per-client``: right when every client trains every round), or one bank keyed by
class that every arriving model draws from and refills (``shared``: right under client
sampling); ``auto`` picks ``shared`` when a round trains fewer than all clients. Clients
share their label counts only when asked (``zdas.share_label_counts``). ``replay_per_class``
tops every class of the fine-tuning set up from the banks' samples of earlier rounds (a
sampled round's models cover a few classes).
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
    Received,
    ServerSetup,
    ServerStep,
    State,
    batchnorm_problems,
    inversion_side_problems,
)
from fedcore.algorithms.zdas_guard import client_scores, guarded
from fedcore.algorithms.zdas_screen import screen_models
from fedcore.data import ArrayDataset, DataSpec
from fedcore.losses import Objective, sgd_train
from fedcore.protocol import LABEL_COUNTS, SHARE_LABEL_COUNTS, ZDAS_PLAIN, number
from fedcore.seeds import ZDAS_MODEL, ZDAS_ROUND, derive_seed
from fedcore.training import Samples, TrainConfig, evaluate
from fedcore.types import StateDict
from inversion import (
    BANK_MODES,
    Banks,
    InversionConfig,
    OwnBanks,
    SharedBank,
    SyntheticBank,
    banks_from_state,
    invert_with_bank,
    labels_for,
    nearest_rms,
    shares_bank,
)
from inversion.allocation import proportional_counts


@dataclass(frozen=True)
class ZdasConfig:
    """Server-side inversion and fine-tuning settings."""

    start_round: int = 1  # first round the server inverts and fine-tunes
    end_round: int = 0  # last round that fine-tunes; 0: every round from start_round on
    samples_per_client: int = 50  # synthetic samples inverted from each client model
    share_label_counts: bool = False  # clients send label counts: allocation, KD weights
    finetune_epochs: int = 3  # passes over the synthetic set (0: no fine-tuning)
    finetune_lr: float = 0.001  # SGD learning rate of the fine-tuning
    finetune_momentum: float = 0.9  # SGD momentum of the fine-tuning, in [0, 1)
    finetune_batch_size: int = 64  # fine-tuning batch size (>= 2)
    ce_weight: float = 1.0  # weight of the cross-entropy on the inversion labels
    kd_weight: float = 0.0  # distillation from the per-class-weighted client ensemble
    kd_temperature: float = 3.0  # distillation temperature T (the KL is scaled by T^2)
    update_bn_stats: bool = False  # off: BN keeps (and uses) the averaged running stats
    bank_max_age: int = 5  # rounds before a bank is stale and inversion restarts from noise
    bank: str = "auto"  # per-client (a bank each), shared, auto: shared if clients sampled
    bank_per_class: int = 256  # samples per class the shared bank keeps
    bank_spread: bool = False  # warm starts from earlier rounds' samples, undrawn ones first
    replay_per_class: int = 0  # top each class of the fine-tuning set up to this from the banks
    gate_accuracy: float = 0.0  # skip fine-tuning when the average labels this share of samples
    screen: float = 0.0  # >0: leave out models whose inversions are this many deviations out
    guard: bool = False  # clients score fine-tuned vs plain average; the step scales by trust
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
            (self.bank in BANK_MODES, f"bank: {self.bank!r} not in {BANK_MODES}"),
            (self.bank_per_class >= 1, "bank_per_class: must be >= 1"),
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
            (self.screen >= 0, f"screen: must be >= 0 (0: off), got {self.screen}"),
            (
                0 <= self.gate_accuracy <= 1,
                f"gate_accuracy: must be in [0, 1] (0: fine-tune every round), got "
                f"{self.gate_accuracy}",
            ),
        ]
        return out + [prefix + msg for ok, msg in checks if not ok]

    def active(self, server_round: int) -> bool:
        """Whether the server inverts and fine-tunes in ``server_round``."""
        return server_round >= self.start_round and (
            self.end_round == 0 or server_round <= self.end_round
        )


@dataclass
class Inverted:
    """Every client model's synthetic samples, the models, and inversion diagnostics."""

    x: torch.Tensor
    y: torch.Tensor
    sources: torch.Tensor  # the partition each sample was inverted from
    teachers: list[nn.Module]
    metrics: dict[str, float]
    bn_losses: dict[int, float] = field(default_factory=dict)  # per source, at the end

    def without(self, left_out: Sequence[int]) -> Inverted:
        """These samples and teachers less those of the ``left_out`` sources."""
        keep = ~torch.isin(self.sources, torch.tensor(list(left_out), dtype=self.sources.dtype))
        ids = [int(s) for s in self.sources.unique_consecutive()]  # one per teacher, in order
        teachers = [t for t, s in zip(self.teachers, ids, strict=True) if s not in left_out]
        return Inverted(self.x[keep], self.y[keep], self.sources[keep], teachers, self.metrics)


@dataclass
class Finetuned:
    """The fine-tuned global state and diagnostics."""

    state: StateDict
    metrics: dict[str, float]


@dataclass
class ZdasOutcome:
    """One ZDAS round: the new global state (fine-tuned, or the average when gated), the
    round's samples, and diagnostics."""

    state: StateDict
    x: torch.Tensor
    y: torch.Tensor
    metrics: dict[str, float]
    sources: torch.Tensor  # the partition each sample was inverted from
    left_out: tuple[int, ...] = ()  # client models the screen left out of the fine-tuning


def client_allocation(cfg: ZdasConfig, num_classes: int, counts: np.ndarray | None) -> np.ndarray:
    """Per-class sample counts for one client model: uniform, or proportional to its counts."""
    if cfg.share_label_counts and counts is not None and np.sum(counts) > 0:
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
    banks: Sequence[SyntheticBank],
    y: torch.Tensor,
    per_class: int,
    num_classes: int,
    server_round: int,
    max_age: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Samples from ``banks`` refined in an earlier round (at most ``max_age`` rounds ago)
    that top every class of ``y`` up to ``per_class``: under client sampling a round's client
    models cover a few classes, and fine-tuning on those alone pulls the average away from the
    others. This round's samples (already in the banks) are never drawn twice."""
    filled = [p for p in banks if not p.is_empty()]
    if not filled:
        return None
    px = torch.cat([p.x for p in filled])
    py = torch.cat([p.y for p in filled])
    age = server_round - torch.cat([p.rounds for p in filled])
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


def _bn_buffers(model: nn.Module) -> StateDict:
    return {
        k: v.clone()
        for k, v in model.state_dict().items()
        if k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    }


ClientModel = tuple[int, StateDict, "np.ndarray | None"]  # partition, state, label counts


def zdas_invert(
    make_model: Callable[[], nn.Module],
    clients: Sequence[ClientModel],
    cfg: ZdasConfig,
    banks: Banks,
    server_round: int,
    spec: DataSpec,
    *,
    student: nn.Module | None = None,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> Inverted:
    """Invert each client model for its allocation, warm-started from ``banks`` (a bank
    per client, or one shared bank) and refilling them.
    ``student`` (the model being fine-tuned) is the ADI competitor when ``inversion.adi`` > 0.
    """
    xs, ys, teachers, sources, bn_losses = [], [], [], [], {}
    acc, bn_loss, warm_sum, inv_seconds = 0.0, 0.0, 0.0, 0.0
    for k, (cid, state, counts) in enumerate(clients):
        teacher = make_model()
        teacher.load_state_dict(state)
        teacher.to(device).eval()
        labels = torch.from_numpy(labels_for(client_allocation(cfg, spec.num_classes, counts)))
        slot = banks.slot(cid)
        res, warm = invert_with_bank(
            teacher, labels, cfg.inversion, slot.bank, server_round, cfg.bank_max_age, spec,
            student=student if cfg.inversion.adi > 0 else None, device=device,
            seed=derive_seed(seed, k, ZDAS_MODEL), offset=slot.offset,
            keep_per_class=slot.keep_per_class, spread=cfg.bank_spread,
        )  # fmt: skip
        xs.append(res.x)
        ys.append(res.y)
        sources.append(torch.full((len(res.y),), cid))
        teachers.append(teacher)
        bn_losses[cid] = res.bn_loss_end
        acc += res.teacher_accuracy / len(clients)
        bn_loss += res.bn_loss_end / len(clients)
        warm_sum += warm / len(clients)
        inv_seconds += res.seconds
    metrics = {
        "zdas-samples": float(sum(len(y) for y in ys)),
        "zdas-inv-seconds": inv_seconds,
        "zdas-teacher-acc": acc,
        "zdas-bn-loss": bn_loss,
        "zdas-warm-fraction": warm_sum,
    }
    x, y = torch.cat(xs), torch.cat(ys)
    metrics["zdas-nearest-rms"] = nearest_rms(x, y)
    return Inverted(x, y, torch.cat(sources), teachers, metrics, bn_losses)


def finetune_set(
    inv: Inverted,
    counts: Sequence[np.ndarray | None],
    cfg: ZdasConfig,
    banks: Banks,
    server_round: int,
    num_classes: int,
    *,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> Samples:
    """The fine-tuning set: the round's samples, replayed bank samples when asked, and the
    per-class-weighted ensemble's logits as targets when distillation is on."""
    x, y = inv.x, inv.y
    data = Samples(x, y)
    if cfg.replay_per_class > 0:
        gen = torch.Generator().manual_seed(seed)
        extra = replay(banks.all(), y, cfg.replay_per_class, num_classes,
                       server_round, cfg.bank_max_age, gen)  # fmt: skip
        if extra is not None:
            data = Samples(torch.cat([x, extra[0]]), torch.cat([y, extra[1]]))
    if cfg.kd_weight > 0:
        w = ensemble_weights(counts, num_classes).to(device)  # (K, C)
        with torch.no_grad():
            per_model = torch.stack([t(x.to(device)) for t in inv.teachers])  # (K, N, C)
            data.teacher_logits = (per_model * w[:, y.to(device)].unsqueeze(-1)).sum(0).cpu()
    return data


def zdas_finetune(
    student: nn.Module, data: Samples, cfg: ZdasConfig, *, device: torch.device | str, seed: int
) -> Finetuned:
    """Fine-tune ``student`` on ``data`` as it will be evaluated: with ``update_bn_stats``
    off, BatchNorm keeps normalising with the averaged running statistics (eval mode) and
    only its affine parameters and the weights learn; with it on, BN uses (and tracks) batch
    statistics."""
    keep = _bn_buffers(student)
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
    metrics = {"zdas-finetune-steps": float(stats.steps), "zdas-finetune-loss": stats.loss}
    return Finetuned(state, metrics)


def zdas_round(
    make_model: Callable[[], nn.Module],
    averaged: StateDict,
    clients: Sequence[ClientModel],
    cfg: ZdasConfig,
    banks: Banks,
    server_round: int,
    spec: DataSpec,
    *,
    device: torch.device | str = "cpu",
    seed: int = 0,
    sent: StateDict | None = None,
    param_names: Sequence[str] = (),
) -> ZdasOutcome:
    """ZDAS's server step: invert every client model (:func:`zdas_invert`), build the
    fine-tuning set (:func:`finetune_set`) and fine-tune ``averaged`` on it.

    ``zdas-average-acc`` is the share of the round's samples that ``averaged`` already labels
    as their target class: a data-free sign of how much of the client models' knowledge the
    average lacks. At or above ``cfg.gate_accuracy`` (when > 0) the round keeps the average
    and skips the fine-tuning (``zdas-gated`` 1, no steps). With ``inversion.adi`` > 0 the
    samples are made to split the average from the client models, so the share reads low."""
    t0 = time.perf_counter()
    student = make_model()
    student.load_state_dict(averaged)
    student.to(device)
    inv = zdas_invert(
        make_model, clients, cfg, banks, server_round, spec,
        student=student, device=device, seed=seed,
    )  # fmt: skip
    pool = ArrayDataset(inv.x, inv.y, spec.mean, spec.std, spec.classes)
    known = number(evaluate(student, pool, device=device)["accuracy"])
    gated = 0 < cfg.gate_accuracy <= known
    metrics = inv.metrics | {"zdas-average-acc": known, "zdas-gated": float(gated)}
    left_out: list[int] = []
    if cfg.screen > 0:
        left_out = screen_models(inv, clients, student, averaged, cfg.screen, device, sent,
                                 param_names)  # fmt: skip
        inv, metrics["zdas-screened"] = inv.without(left_out), float(len(left_out))
        clients = [c for c in clients if c[0] not in left_out]
    if gated:
        state = averaged
        metrics |= {"zdas-finetune-steps": 0.0, "zdas-replayed": 0.0}
    else:
        data = finetune_set(
            inv, [c[2] for c in clients], cfg, banks, server_round, spec.num_classes,
            device=device, seed=seed,
        )  # fmt: skip
        out = zdas_finetune(student, data, cfg, device=device, seed=seed)
        state, metrics = out.state, metrics | out.metrics
        metrics["zdas-replayed"] = float(len(data.y) - len(inv.y))
    metrics["zdas-seconds"] = time.perf_counter() - t0
    return ZdasOutcome(state, inv.x, inv.y, metrics, inv.sources, tuple(left_out))


@dataclass
class ZdasHook(ClientHook):
    """Reports label counts when asked; with ``zdas.guard``, the two models' own-data loss."""

    counts: bool
    plain: StateDict | None

    def before(self, rnd: ClientRound, plan: LocalPlan) -> None:
        if self.counts:
            plan.metrics[LABEL_COUNTS] = [int(c) for c in rnd.label_counts]
        if self.plain is not None:
            client_scores(rnd, plan, self.plain)


class Zdas(Algorithm):
    """FedAvg, then every client model inverted and the average fine-tuned on their samples.
    State: the banks (one per client, or one shared); ``guard``: trust, last average."""

    name = "zdas"
    section = "zdas"
    Config = ZdasConfig
    averages_only = False  # inverts every client's model

    def __init__(self, setup: ServerSetup[ZdasConfig]) -> None:
        super().__init__(setup)
        self.cfg = setup.cfg
        self.shared = shares_bank(self.cfg.bank, setup.run.samples_clients)

    @classmethod
    def model_problems(cls, cfg: ZdasConfig, model: nn.Module) -> list[str]:
        return batchnorm_problems(cfg, model, "zdas")

    @classmethod
    def client_hook(cls, config: dict[str, Any], arrays: dict) -> ClientHook | None:
        counts, plain = bool(config.get(SHARE_LABEL_COUNTS)), arrays.get(ZDAS_PLAIN)
        return ZdasHook(counts, plain) if counts or plain is not None else None

    def init(self, global_state: StateDict) -> State:
        banks = (SharedBank(self.cfg.bank_per_class) if self.shared else OwnBanks()).state()
        return banks | ({"guard": {"trust": 1.0}} if self.cfg.guard else {})

    def train_arrays(self, state: State, server_round: int) -> dict[str, StateDict]:
        plain = state.get("guard", {}).get("plain")  # scored only where it fine-tunes
        return {ZDAS_PLAIN: plain} if plain is not None and self.cfg.active(server_round) else {}

    def train_config(self, server_round: int) -> dict[str, Any]:
        return {SHARE_LABEL_COUNTS: True} if self.cfg.share_label_counts else {}

    def apply(self, state: State, got: Received) -> tuple[State, ServerStep]:
        rnd, guard = got.server_round, state.get("guard")
        if not self.cfg.active(rnd):  # the global model is the average: nothing to score
            kept = {"guard": {"trust": guard["trust"]}} if guard else {}
            return state | kept, ServerStep(got.averaged)
        s, banks = self.setup, banks_from_state(state, self.cfg.bank_per_class)
        clients = [(r.partition_id, r.state, r.label_counts) for r in got.replies]
        out = zdas_round(
            s.make_model, got.averaged, clients, self.cfg, banks, rnd, s.spec, device=s.device,
            seed=derive_seed(s.run.seed, rnd, ZDAS_ROUND), sent=got.sent,
            param_names=s.param_names,
        )  # fmt: skip
        new: State = banks.state()
        tuned, metrics = out.state, out.metrics
        if guard is not None:
            new["guard"], tuned, more = guarded(guard["trust"], got, tuned)
            metrics = metrics | more
        return new, ServerStep(tuned, metrics, (out.x, out.y), out.sources, out.left_out)
