"""What an algorithm is: hooks around FedAvg's round, on both sides of the wire.

Every algorithm is one subclass of :class:`Algorithm` in one module. Its server side says
what a train message carries besides the model (:meth:`Algorithm.train_config`,
:meth:`Algorithm.train_arrays`), which extra arrays a reply must return
(:meth:`Algorithm.reply_arrays`), what happens after averaging
(:meth:`Algorithm.server_update`) and what a checkpoint holds. Its client side is a
:class:`ClientHook`, built from what the message asks for (:meth:`Algorithm.client_hook`):
clients never need the server's algorithm choice. :class:`Composite` chains algorithms
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
from fedcore.sampling import Sampling
from fedcore.training import Regularizer, Synthetic, TrainConfig, TrainStats

if TYPE_CHECKING:
    from fedcore.config import ExperimentConfig
    from fedcore.protocol import TrainReply

StateDict = dict[str, torch.Tensor]


@dataclass
class ServerSetup:
    """What a server side is built from."""

    cfg: ExperimentConfig
    spec: DataSpec
    make_model: Callable[[], nn.Module]
    device: torch.device
    param_names: tuple[str, ...]

    @property
    def samples_clients(self) -> bool:
        """Whether a round trains fewer than all clients (then pools move to the server)."""
        s = self.cfg.server
        return Sampling(s.fraction_train, s.min_train_nodes).size(self.cfg.num_clients) < (
            self.cfg.num_clients
        )


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
    """What hooks add to local training and to the reply."""

    synthetic: Synthetic | None = None
    regularizers: list[Regularizer] = field(default_factory=list)
    grad_correction: list[torch.Tensor] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, StateDict] = field(default_factory=dict)
    preview: tuple[torch.Tensor, torch.Tensor] | None = None

    def regularizer(self) -> Regularizer | None:
        """The sum of the regularisers (None when there are none)."""
        if not self.regularizers:
            return None
        if len(self.regularizers) == 1:
            return self.regularizers[0]
        return lambda m: sum(r(m) for r in self.regularizers)  # type: ignore[return-value]


def inversion_side_problems(cfg: Any, prefix: str) -> list[str]:
    """Checks ZDAC's and ZDAS's configs share: the inversion, start round, pool, distillation."""
    checks = [
        (cfg.start_round >= 1, f"start_round: must be >= 1, got {cfg.start_round}"),
        (cfg.pool_max_age >= 0, "pool_max_age: must be >= 0"),
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
    # Whether ``fedprox.compose_with_zda`` adds FedProx's proximal term to this algorithm.
    composes_with_proximal: ClassVar[bool] = False
    # Whether the server only averages (no per-client model, record or variate), so that the
    # rounds can run under secure aggregation (``server.secure_aggregation``).
    averages_only: ClassVar[bool] = True

    def __init__(self, setup: ServerSetup) -> None:
        self.setup = setup

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
