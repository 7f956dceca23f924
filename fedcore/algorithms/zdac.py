"""ZDAC, the client side of Fed-ZDA: invert the received global model into synthetic
samples that balance this client's class mix, and train on real + synthetic data.

The server sends ZDAC's settings flattened under ``zdac.`` in the train ConfigRecord.
Warm starts come from one of two banks (``zdac.bank``): each client's own, kept in its
persistent state (``per-client``: right when every client trains every round), or a bank
the server inverts from the global model once per round and sends with the model as the
ArrayRecord ``zdac-bank`` (``shared``: right under client sampling, where a client comes
back too rarely for its own bank to be fresh; the upload stays FedAvg's). ``auto`` picks
``shared`` when a round trains fewer than all clients. :func:`mix_synthetic` adds the
samples to the client's data (shuffled in, or paired with every real batch).
"""

from __future__ import annotations

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
    RunContext,
    ServerSetup,
    State,
    batchnorm_problems,
    inversion_side_problems,
)
from fedcore.data import DataSpec
from fedcore.losses import OWN, LocalData, Objective, ObjectiveTerm
from fedcore.protocol import ZDAC_BANK, ZDAC_PREFIX
from fedcore.schema import flatten, from_flat
from fedcore.seeds import ZDAC_BANK as BANK_STREAM
from fedcore.seeds import derive_seed
from fedcore.training import REAL, SYNTHETIC, Samples, Source
from fedcore.types import StateDict
from inversion import (
    BANK_MODES,
    InversionConfig,
    SyntheticBank,
    allocate,
    invert_with_bank,
    labels_for,
    shares_bank,
)
from inversion.allocation import ALLOCATIONS

OWN_BANK_KEY = "zdac-own-bank"  # the client's persistent state key for its own bank
SYNTHETIC_SOURCE = "zdac-synthetic"  # the source name of paired synthetic samples
WEIGHTINGS = ("fixed", "missing-mass")
PREVIEW_PER_CLASS = 2


@dataclass(frozen=True)
class ZdacConfig:
    """Client-side inversion and augmentation settings."""

    start_round: int = 2  # first round that inverts (round 1's model is untrained)
    allocation: str = "complement"  # classes short of the largest, by deficit; or uniform
    budget: float = 0.1  # ratio of local data if < 1, else a sample count
    synthetic_weight: float = 1.0  # a synthetic sample's loss weight with weighting=fixed; real: 1
    weighting: str = "fixed"  # fixed, or missing-mass: synthetic share = deficit / (N + deficit)
    paired_batch_size: int = 0  # >0: every real batch trains with this many synthetic samples
    kd_weight: float = 0.0  # distillation from the global model on synthetic samples
    kd_temperature: float = 3.0  # distillation temperature T (the KL is scaled by T^2)
    bank_max_age: int = 5  # rounds before a bank is stale and inversion restarts from noise
    bank: str = "auto"  # per-client (own), shared (server's), auto: shared if clients sampled
    bank_per_class: int = 32  # samples per class in the server's shared bank
    refine_bank: bool = False  # clients refine the bank's samples (the server already did)
    preview_client: int = 0  # this partition sends 2 samples per class for the server's image grid
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
            (self.bank in BANK_MODES, f"bank: {self.bank!r} not in {BANK_MODES}"),
            (self.bank_per_class >= 1, "bank_per_class: must be >= 1"),
        ]  # fmt: skip
        return out + [prefix + msg for ok, msg in checks if not ok]


@dataclass
class Synthetic:
    """Synthetic inputs with labels for a client update; with ``teacher_logits`` their loss
    also includes ``kd_weight`` times distillation.

    Shuffled in (``paired_batch_size`` 0): each synthetic sample's cross-entropy weighs
    ``weight`` and each real sample's ``real_weight``. Paired: every real batch is trained
    together with the next ``paired_batch_size`` synthetic samples (cycled), and the step's
    loss is ``real_weight * loss(real batch) + weight * loss(synthetic batch)``.
    """

    x: torch.Tensor
    y: torch.Tensor
    weight: float = 1.0
    teacher_logits: torch.Tensor | None = None
    kd_weight: float = 0.0
    temperature: float = 1.0
    real_weight: float = 1.0
    paired_batch_size: int = 0


def mix_synthetic(data: LocalData, syn: Synthetic) -> LocalData:
    """The client's data with ``syn`` added: shuffled into its own samples (every own
    sample weighing ``real_weight`` times its weight, each synthetic one ``weight``, with
    the origin :data:`~fedcore.training.SYNTHETIC`), or as a source of its own drawn
    beside every batch, with its own loss term (the own samples' term weighs
    ``real_weight``)."""
    own = data.own_samples
    if own.origin is not None or SYNTHETIC_SOURCE in data.sources:
        raise ValueError("mix_synthetic: the client's data already holds synthetic samples")
    if syn.y.numel() == 0:
        return data
    x, y, n_real = own.x, own.y, data.num_real
    out = LocalData(dict(data.sources), n_real, replace(data.own), list(data.terms))
    sx, sy = syn.x.detach().to(x.dtype).cpu(), syn.y.long().cpu()
    kd = syn.kd_weight if syn.teacher_logits is not None else 0.0
    if syn.paired_batch_size > 0:
        extra = Samples(sx, sy, None, syn.teacher_logits, default_origin=SYNTHETIC)
        out.sources[OWN] = Source(Samples(x, y))
        out.sources[SYNTHETIC_SOURCE] = Source(extra, syn.paired_batch_size)
        out.own.weight = syn.real_weight
        objective = Objective(1.0, kd, syn.temperature)
        out.terms.append(ObjectiveTerm(SYNTHETIC_SOURCE, objective, syn.weight, out.own.adjust))
        return out
    n_syn = sy.numel()
    real_w = own.weights if own.weights is not None else torch.ones(n_real)
    samples = Samples(
        torch.cat([x, sx]),
        torch.cat([y, sy]),
        torch.cat([real_w * syn.real_weight, torch.full((n_syn,), syn.weight)]),
        origin=torch.where(torch.arange(n_real + n_syn) < n_real, REAL, SYNTHETIC),
    )
    if syn.teacher_logits is not None and syn.kd_weight > 0:
        samples.teacher_logits = torch.cat(
            [torch.zeros(n_real, syn.teacher_logits.shape[1]), syn.teacher_logits]
        )
        samples.distill = torch.arange(n_real + n_syn) >= n_real
        out.own.objective = Objective(1.0, syn.kd_weight, syn.temperature)
    out.sources[OWN] = Source(samples)
    return out


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


# what zdac_augment reports every round (zeros where it makes no synthetic data)
ZDAC_METRICS = ("syn-count", "inv-seconds", "inv-teacher-acc", "inv-bn-loss",
                "inv-warm-fraction", "inv-warm-count", "syn-weight")  # fmt: skip


def zdac_augment(
    global_model: nn.Module,
    label_counts: np.ndarray,
    cfg: ZdacConfig,
    bank: SyntheticBank,
    server_round: int,
    spec: DataSpec,
    *,
    device: torch.device | str = "cpu",
    seed: int = 0,
    offset: int = 0,
) -> ZdacOutcome:
    """Invert ``global_model`` for the allocated classes (warm-started from ``bank``).

    Updates ``bank`` in place. Returns no synthetic data before ``cfg.start_round`` or when
    the allocation is empty (an already balanced client under ``complement``).
    """
    metrics = dict.fromkeys(ZDAC_METRICS, 0.0)
    if server_round < cfg.start_round:
        return ZdacOutcome(None, metrics)
    per_class = allocate(cfg.allocation, label_counts, cfg.budget)
    if per_class.sum() == 0:
        return ZdacOutcome(None, metrics)
    labels = torch.from_numpy(labels_for(per_class))
    res, warm = invert_with_bank(
        global_model, labels, cfg.inversion, bank, server_round, cfg.bank_max_age, spec,
        device=device, seed=seed, offset=offset,
    )  # fmt: skip
    teacher_logits = _logits(global_model, res.x, device) if cfg.kd_weight > 0 else None
    real_w, syn_w = loss_weights(cfg, label_counts, len(res.y))
    metrics.update(  # in ZDAC_METRICS's order, as a round without synthetic data
        {
            "syn-count": float(len(res.y)),
            "inv-seconds": res.seconds,
            "inv-teacher-acc": res.teacher_accuracy,
            "inv-bn-loss": res.bn_loss_end,
            "inv-warm-fraction": warm,
            "inv-warm-count": float(round(warm * len(res.y))),
            "syn-weight": syn_w,
        }
    )
    syn = Synthetic(
        res.x, res.y, syn_w, teacher_logits, cfg.kd_weight, cfg.kd_temperature,
        real_weight=real_w, paired_batch_size=cfg.paired_batch_size,
    )  # fmt: skip
    return ZdacOutcome(syn, metrics)


def _logits(model: nn.Module, x: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """``model``'s logits for ``x`` in eval mode, on the CPU (its mode restored): the global
    model's soft labels for ZDAC's distillation."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(x.to(device)).cpu()
    model.train(was_training)
    return out


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
        shared = rnd.arrays.get(ZDAC_BANK)
        own = shared is None  # with the server's bank, nothing is kept on the client
        bank = SyntheticBank.from_state(
            shared if shared is not None else rnd.state.get(OWN_BANK_KEY, {})
        )
        cfg = self.cfg
        if not own and not cfg.refine_bank:  # refined against this very model on the server
            cfg = replace(cfg, inversion=replace(cfg.inversion, warm_steps=0))
        out = zdac_augment(
            rnd.model, rnd.label_counts, cfg, bank, rnd.server_round, rnd.spec,
            device=rnd.device, seed=rnd.seed, offset=0 if own else rnd.partition_id,
        )  # fmt: skip
        if own and not bank.is_empty():
            rnd.state[OWN_BANK_KEY] = bank.state()
        if out.synthetic is not None:
            plan.data = mix_synthetic(plan.data, out.synthetic)
        plan.metrics |= out.metrics
        if rnd.partition_id == self.cfg.preview_client and out.synthetic is not None:
            plan.preview = preview(out.synthetic, rnd.spec.num_classes)


class Zdac(Algorithm):
    """FedAvg on the server; every train message carries ZDAC's settings, and with the
    server's bank (its state) the bank's samples, refined against the global model first."""

    name = "zdac"
    section = "zdac"
    Config = ZdacConfig

    def __init__(self, setup: ServerSetup[ZdacConfig]) -> None:
        super().__init__(setup)
        self.cfg = setup.cfg
        shared = shares_bank(self.cfg.bank, setup.run.samples_clients)
        # under secure aggregation a train message carries only the model and its config
        self.banks = shared and not setup.run.secure_aggregation

    def init(self, global_state: StateDict) -> State:
        return {"bank": {}}

    def sends_bank(self, server_round: int) -> bool:
        return self.banks and server_round >= self.cfg.start_round

    def prepare(
        self, state: State, server_round: int, global_state: StateDict
    ) -> tuple[State, dict[str, float]]:
        """The bank refined against the global model (warm from last round's bank)."""
        if not self.sends_bank(server_round):
            return state, {}
        s = self.setup
        model = s.make_model()
        model.load_state_dict(global_state)
        per_class = np.full(s.spec.num_classes, self.cfg.bank_per_class)
        labels = torch.from_numpy(labels_for(per_class))
        bank = SyntheticBank.from_state(state["bank"])
        res, warm = invert_with_bank(
            model, labels, self.cfg.inversion, bank, server_round, self.cfg.bank_max_age,
            s.spec, device=s.device, seed=derive_seed(s.run.seed, server_round, BANK_STREAM),
        )  # fmt: skip
        metrics = {
            "zdac-bank-samples": float(len(labels)),
            "zdac-bank-seconds": res.seconds,
            "zdac-bank-warm-fraction": warm,
        }
        return {"bank": bank.state()}, metrics

    def train_arrays(self, state: State, server_round: int) -> dict[str, StateDict]:
        return {ZDAC_BANK: state["bank"]} if self.sends_bank(server_round) else {}

    @classmethod
    def run_problems(cls, cfg: ZdacConfig, run: RunContext) -> list[str]:
        if run.secure_aggregation and cfg.bank == "shared":
            return [
                "zdac.bank: 'shared' sends a bank that SecAgg+ messages cannot carry; use "
                "'auto' or 'per-client' under server.secure_aggregation"
            ]
        return []

    @classmethod
    def model_problems(cls, cfg: ZdacConfig, model: nn.Module) -> list[str]:
        return batchnorm_problems(cfg, model, "zdac")

    @classmethod
    def client_hook(cls, config: dict[str, Any], arrays: dict) -> ClientHook | None:
        if not any(k.startswith(ZDAC_PREFIX) for k in config):
            return None
        return ZdacHook(from_flat(ZdacConfig, config, ZDAC_PREFIX))

    def train_config(self, server_round: int) -> dict[str, Any]:
        return flatten(self.cfg, ZDAC_PREFIX)
