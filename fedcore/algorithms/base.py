"""What an algorithm is: hooks around FedAvg's round, on both sides of the wire.

Every algorithm is one subclass of :class:`Algorithm` in one module, with its own config
section (``section`` and ``Config``) and a :class:`RunContext`, never the whole experiment.
Its server side keeps no state of its own: its state is a value (:data:`State`) made by
:meth:`Algorithm.init`, passed into each step and returned by it, and saved by checkpoints.
A round is :meth:`Algorithm.prepare` (work before the messages, e.g. refining a bank), the
message (:meth:`Algorithm.train_config`, :meth:`Algorithm.train_arrays`: they read, never
change, the state), the replies' extra arrays (:meth:`Algorithm.reply_arrays`) and
:meth:`Algorithm.apply` after averaging, given the model that was sent. Its client side is a
:class:`ClientHook`, built from what the message asks for (:meth:`Algorithm.client_hook`):
clients never need the server's algorithm choice. A hook shapes local training through
:class:`LocalPlan`: the samples, logit adjustments and loss terms on the outputs, weight
regularisers and gradient corrections. :class:`Composite` chains algorithms
(``zda`` is ``zdac`` + ``zdas``). Nothing here knows Flower's transport.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import numpy as np
import torch
from torch import nn

from fedcore.data import ArrayDataset, DataSpec
from fedcore.losses import LocalData
from fedcore.models import has_batchnorm
from fedcore.training import LogitAdjust, Term, TrainConfig, TrainStats, evaluate
from fedcore.types import StateDict

State = dict[str, Any]  # an algorithm's server state: made by init, passed in and out of steps

if TYPE_CHECKING:
    from fedcore.protocol import TrainReply


@dataclass(frozen=True)
class RunContext:
    """What an algorithm may know of the run besides its own section."""

    seed: int = 0
    num_clients: int = 0
    samples_clients: bool = False  # a round trains fewer than all clients
    secure_aggregation: bool = False  # SecAgg+: the server sees only the sum of the models


C = TypeVar("C")


@dataclass
class ServerSetup(Generic[C]):
    """What a server side is built from: its config section and the run's context."""

    cfg: C  # the algorithm's own section (``Algorithm.Config``), None when it has none
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
    left_out: tuple[int, ...] = ()  # client models a screen left out (e.g. ZDAS's)


@dataclass(frozen=True)
class Received:
    """What a server step works on: the round, the global model sent in it, the
    example-weighted average of the replies' models and the replies (in partition order)."""

    server_round: int
    sent: StateDict
    averaged: StateDict
    replies: Sequence[TrainReply]


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


def own_loss(rnd: ClientRound, plan: LocalPlan, model: nn.Module | None = None) -> float:
    """The mean cross-entropy of ``model`` (the received global model when None) on this
    client's own samples; the received model keeps its train/eval mode."""
    real, n, s = plan.data.own_samples, plan.data.num_real, rnd.spec
    own = ArrayDataset(real.x[:n], real.y[:n], s.mean, s.std, s.classes)
    was_training = rnd.model.training
    loss = evaluate(model or rnd.model, own, device=rnd.device)["loss"]
    rnd.model.train(was_training)
    assert isinstance(loss, float)
    return loss


@dataclass
class LocalPlan:
    """What hooks add to local training and to the reply.

    ``data`` starts as the client's own samples and the cross-entropy on them
    (``data.own``); a hook may add a sample source (``data.sources``: shuffled into the
    epochs, or drawn beside every batch) and loss terms (``data.terms``: functions of the
    :class:`~fedcore.training.Batch`, on outputs, features or weights). ``logit_adjust``
    functions ``(logits, origin) -> logits`` feed the own cross-entropy; ``regularizers``
    (terms too) are added after every other term; ``grad_corrections`` (one tensor per
    parameter each) are summed into every gradient.
    """

    data: LocalData
    regularizers: list[Term] = field(default_factory=list)
    grad_corrections: list[list[torch.Tensor]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, StateDict] = field(default_factory=dict)
    preview: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def logit_adjust(self) -> list[LogitAdjust]:
        """The own cross-entropy's logit adjustments (append to add one)."""
        return self.data.own.adjust

    @property
    def terms(self) -> list[Term]:
        """Loss terms after the own cross-entropy (append to add one)."""
        return self.data.terms

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
    """FedAvg's server side: no state, nothing added to messages, the average kept as it is.

    Every method is a function of its arguments and the algorithm's settings
    (``self.setup``); what changes across rounds is the :data:`State` value the caller
    threads through :meth:`prepare` and :meth:`apply`.
    """

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

    def init(self, global_state: StateDict) -> State:
        """The state before the first round, given the initial global model."""
        return {}

    def prepare(
        self, state: State, server_round: int, global_state: StateDict
    ) -> tuple[State, dict[str, float]]:
        """Work before the round's messages are built; the new state and its metrics."""
        return state, {}

    def train_config(self, server_round: int) -> dict[str, Any]:
        """ConfigRecord entries every train message carries."""
        return {}

    def train_arrays(self, state: State, server_round: int) -> dict[str, StateDict]:
        """ArrayRecords every train message carries besides the model."""
        return {}

    def reply_arrays(self, state: State) -> dict[str, StateDict]:
        """ArrayRecords a train reply must carry besides the model, with reference tensors."""
        return {}

    def apply(self, state: State, got: Received) -> tuple[State, ServerStep]:
        """Work on the average of the replies to the global model sent (FedAvg: none)."""
        return state, ServerStep(got.averaged)


class Composite(Algorithm):
    """Several algorithms in sequence: messages carry what each adds; steps chain. Its
    state holds each part's under the part's name."""

    def __init__(self, parts: Sequence[Algorithm]) -> None:
        super().__init__(parts[0].setup)
        self.parts = list(parts)
        self.name = "+".join(p.name for p in parts)  # type: ignore[misc]

    def init(self, global_state: StateDict) -> State:
        return {p.name: p.init(global_state) for p in self.parts}

    def prepare(
        self, state: State, server_round: int, global_state: StateDict
    ) -> tuple[State, dict[str, float]]:
        new, metrics = dict(state), dict[str, float]()
        for p in self.parts:
            new[p.name], m = p.prepare(state[p.name], server_round, global_state)
            metrics |= m
        return new, metrics

    def train_config(self, server_round: int) -> dict[str, Any]:
        return {k: v for p in self.parts for k, v in p.train_config(server_round).items()}

    def train_arrays(self, state: State, server_round: int) -> dict[str, StateDict]:
        out: dict[str, StateDict] = {}
        for p in self.parts:
            out |= p.train_arrays(state[p.name], server_round)
        return out

    def reply_arrays(self, state: State) -> dict[str, StateDict]:
        out: dict[str, StateDict] = {}
        for p in self.parts:
            out |= p.reply_arrays(state[p.name])
        return out

    def apply(self, state: State, got: Received) -> tuple[State, ServerStep]:
        new, step = dict(state), ServerStep(got.averaged)
        for p in self.parts:
            new[p.name], nxt = p.apply(state[p.name], replace(got, averaged=step.state))
            step = ServerStep(
                nxt.state, step.metrics | nxt.metrics, nxt.samples or step.samples,
                nxt.sources if nxt.samples else step.sources, nxt.left_out or step.left_out,
            )  # fmt: skip
        return new, step
