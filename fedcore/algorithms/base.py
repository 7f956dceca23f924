"""What an algorithm is: hooks around FedAvg's round, on both sides of the wire.

Every algorithm is one subclass of :class:`Algorithm` in one module, with its own config
section (``section`` and ``Config``) and a :class:`RunContext`, never the whole experiment.
Its server side says
what a train message carries besides the model (:meth:`Algorithm.train_config`,
:meth:`Algorithm.train_arrays`), which extra arrays a reply must return
(:meth:`Algorithm.reply_arrays`), what happens after averaging
(:meth:`Algorithm.server_update`) and what a checkpoint holds. Its client side is a
:class:`ClientHook`, built from what the message asks for (:meth:`Algorithm.client_hook`):
clients never need the server's algorithm choice. A hook shapes local training through
:class:`LocalPlan`: the samples, logit adjustments and loss terms on the outputs, weight
regularisers and gradient corrections. :class:`Composite` chains algorithms
(``zda`` is ``zdac`` + ``zdas``). Nothing here knows Flower's transport.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from fedcore.data import DataSpec
from fedcore.models import has_batchnorm
from fedcore.training import (
    LocalData,
    LogitAdjust,
    LossTerms,
    OutputTerm,
    Regularizer,
    TrainConfig,
    TrainStats,
)
from fedcore.types import StateDict

if TYPE_CHECKING:
    from fedcore.protocol import TrainReply


@dataclass(frozen=True)
class RunContext:
    """What an algorithm may know of the run besides its own section."""

    seed: int = 0
    num_clients: int = 0
    samples_clients: bool = False  # a round trains fewer than all clients
    secure_aggregation: bool = False  # SecAgg+: the server sees only the sum of the models


@dataclass
class ServerSetup:
    """What a server side is built from: its config section and the run's context."""

    cfg: Any  # the algorithm's own section (``Algorithm.Config``), None when it has none
    run: RunContext
    spec: DataSpec
    make_model: Callable[[], nn.Module]
    device: torch.device
    param_names: tuple[str, ...]


@dataclass
class ServerStep:
    """The refined global state, diagnostics and (optionally) synthetic samples to show."""

    state: StateDict
    metrics: dict[str, float] = field(default_factory=dict)
    samples: tuple[torch.Tensor, torch.Tensor] | None = None
    sources: torch.Tensor | None = None  # the partition each sample was inverted from


@dataclass
class ClientRound:
    """One train request as a client's hooks see it."""

    server_round: int
    partition_id: int
    seed: int
    label_counts: np.ndarray
    spec: DataSpec
    train: TrainConfig
    model: nn.Module  # the received global model; it is trained after the hooks' `before`
    arrays: dict[str, StateDict]  # extra ArrayRecords the server sent
    state: dict[str, StateDict]  # this client's persistent state (read and written by hooks)
    device: torch.device


@dataclass
class LocalPlan:
    """What hooks add to local training and to the reply.

    ``data`` starts as the client's own samples; a hook may add samples (shuffled in or
    paired). ``logit_adjust`` functions ``(logits, origin) -> logits`` feed the
    cross-entropy; ``output_terms`` ``(logits, labels, origin) -> loss`` and
    ``regularizers`` ``model -> loss`` are added to every batch loss; ``grad_corrections``
    (one tensor per parameter each) are summed into every gradient.
    """

    data: LocalData
    logit_adjust: list[LogitAdjust] = field(default_factory=list)
    output_terms: list[OutputTerm] = field(default_factory=list)
    regularizers: list[Regularizer] = field(default_factory=list)
    grad_corrections: list[list[torch.Tensor]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, StateDict] = field(default_factory=dict)
    preview: tuple[torch.Tensor, torch.Tensor] | None = None

    def loss_terms(self) -> LossTerms:
        """The loss additions, for :func:`fedcore.training.train_local`."""
        return LossTerms(self.logit_adjust, self.output_terms, self.regularizers)

    def grad_correction(self) -> list[torch.Tensor] | None:
        """The per-parameter sum of the gradient corrections (None when there are none)."""
        if not self.grad_corrections:
            return None
        if len(self.grad_corrections) == 1:
            return self.grad_corrections[0]
        return [sum(cs[1:], cs[0]) for cs in zip(*self.grad_corrections, strict=True)]


def batchnorm_problems(cfg: Any, model: nn.Module, section: str) -> list[str]:
    """ZDAC's and ZDAS's check: inversion matches BatchNorm statistics unless its ``bn``
    weight is 0, so a model without BatchNorm needs ``inversion.bn = 0``, asked for."""
    if cfg.inversion.bn == 0 or has_batchnorm(model):
        return []
    return [
        f"model.name: {type(model).__name__} has no BatchNorm layer with running statistics, "
        f"which {section}'s inversion matches; set {section}.inversion.bn=0 to invert with "
        "the cross-entropy, TV and L2 priors only, or use a model with BatchNorm"
    ]


def inversion_side_problems(cfg: Any, prefix: str) -> list[str]:
    """Checks ZDAC's and ZDAS's configs share: the inversion, start round, bank, distillation."""
    checks = [
        (cfg.start_round >= 1, f"start_round: must be >= 1, got {cfg.start_round}"),
        (cfg.bank_max_age >= 0, "bank_max_age: must be >= 0"),
        (cfg.kd_weight >= 0, "kd_weight: must be >= 0"),
        (cfg.kd_temperature > 0, "kd_temperature: must be > 0"),
    ]
    own = [prefix + msg for ok, msg in checks if not ok]
    return cfg.inversion.problems(f"{prefix}inversion.") + own


class ClientHook:
    """Client-side additions of one algorithm; both steps default to nothing."""

    def before(self, rnd: ClientRound, plan: LocalPlan) -> None:
        """Before local training: add samples, a regulariser or a gradient correction."""

    def after(self, rnd: ClientRound, stats: TrainStats, plan: LocalPlan) -> None:
        """After local training (``rnd.model`` is trained): add metrics or arrays."""


class Algorithm:
    """FedAvg's server side: nothing added to messages, the average kept as it is."""

    name: ClassVar[str] = "fedavg"
    section: ClassVar[str] = ""  # its config section ("" when it has no settings)
    Config: ClassVar[type | None] = None  # the section's frozen dataclass (``problems()``)
    # Whether the server only averages (no per-client model, record or variate), so that the
    # rounds can run under secure aggregation (``server.secure_aggregation``).
    averages_only: ClassVar[bool] = True
    # Whether its server update replaces the average (it then runs first in a composition).
    replaces_average: ClassVar[bool] = False

    def __init__(self, setup: ServerSetup) -> None:
        self.setup = setup

    @classmethod
    def run_problems(cls, cfg: Any, run: RunContext) -> list[str]:
        """Problems of this section's settings in this run (beyond ``Config.problems``)."""
        return []

    @classmethod
    def model_problems(cls, cfg: Any, model: nn.Module) -> list[str]:
        """Problems of running this algorithm on ``model`` (known once it is built)."""
        return []

    @classmethod
    def client_hook(cls, config: dict[str, Any], arrays: dict[str, StateDict]) -> ClientHook | None:
        """The client-side hook a train message asks for, or None."""
        return None

    def train_config(self, server_round: int) -> dict[str, Any]:
        """ConfigRecord entries every train message carries."""
        return {}

    def train_arrays(self, server_round: int, global_state: StateDict) -> dict[str, StateDict]:
        """ArrayRecords every train message carries besides the model."""
        return {}

    def reply_arrays(self, global_state: StateDict) -> dict[str, StateDict]:
        """ArrayRecords a train reply must carry besides the model, with reference tensors."""
        return {}

    def server_update(
        self, server_round: int, averaged: StateDict, replies: Sequence[TrainReply]
    ) -> ServerStep:
        """Work on the averaged model (FedAvg: none)."""
        return ServerStep(averaged)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must hold to resume exactly."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""


class Composite(Algorithm):
    """Several algorithms in sequence: messages carry what each adds; server updates chain."""

    def __init__(self, parts: Sequence[Algorithm]) -> None:
        super().__init__(parts[0].setup)
        self.parts = list(parts)
        self.name = "+".join(p.name for p in parts)  # type: ignore[misc]

    def train_config(self, server_round: int) -> dict[str, Any]:
        return {k: v for p in self.parts for k, v in p.train_config(server_round).items()}

    def train_arrays(self, server_round: int, global_state: StateDict) -> dict[str, StateDict]:
        out: dict[str, StateDict] = {}
        for p in self.parts:
            out |= p.train_arrays(server_round, global_state)
        return out

    def reply_arrays(self, global_state: StateDict) -> dict[str, StateDict]:
        out: dict[str, StateDict] = {}
        for p in self.parts:
            out |= p.reply_arrays(global_state)
        return out

    def server_update(
        self, server_round: int, averaged: StateDict, replies: Sequence[TrainReply]
    ) -> ServerStep:
        step = ServerStep(averaged)
        for p in self.parts:
            nxt = p.server_update(server_round, step.state, replies)
            step = ServerStep(
                nxt.state, step.metrics | nxt.metrics, nxt.samples or step.samples,
                nxt.sources if nxt.samples else step.sources,
            )  # fmt: skip
        return step

    def state_dict(self) -> dict[str, Any]:
        return {p.name: p.state_dict() for p in self.parts}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for p in self.parts:
            p.load_state_dict(state[p.name])
