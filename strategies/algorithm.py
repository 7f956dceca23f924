"""One Flower strategy for every algorithm: a thin adapter over :mod:`fedcore.algorithms`.

Built on Flower's message-API ``FedAvg`` (its message construction); clients are sampled
by partition with a seeded draw per round (:mod:`fedcore.sampling`), so a resumed run
samples what the uninterrupted one did. Each train message also carries what the algorithm
asks of clients; each reply is decoded
and checked once (:func:`fedcore.protocol.decode_train_reply`), refused replies are logged
one line per node and never averaged; the example-weighted average goes through the
algorithm's server update. Federated evaluation is summarised per client (mean, std,
worst-10 %, best-10 %). :meth:`AlgorithmStrategy.train_round` and
:meth:`AlgorithmStrategy.evaluate_round` return the round's results as values;
``aggregate_train``/``aggregate_evaluate`` keep Flower's signatures.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from logging import INFO, WARNING

import numpy as np
import torch
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Message,
    MetricRecord,
    MetricRecordValues,
    RecordDict,
)
from flwr.app.message_type import MessageType
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from flwr.supercore import log

from fedcore.algorithms import Algorithm
from fedcore.algorithms.base import State
from fedcore.metrics import fairness_summary
from fedcore.protocol import (
    NUM_PARTITIONS,
    PARTITION_ID,
    SERVER_ROUND,
    EvalReply,
    TrainReply,
    add_arrays,
    decode_eval_reply,
    decode_train_reply,
    record_to_state,
    state_to_record,
)
from fedcore.round import aggregate, outgoing
from fedcore.sampling import EVALUATE, TRAIN, Rounds, sample_partitions
from fedcore.types import StateDict


class FederationError(RuntimeError):
    """The federation cannot run (wrong node count, no node connected, every client failing)."""


@dataclass
class TrainResult:
    """One training round: the new global arrays (None: keep the old) and what it produced."""

    arrays: ArrayRecord | None
    metrics: dict[str, float] = field(default_factory=dict)
    samples: tuple[torch.Tensor, torch.Tensor] | None = None  # server-side synthetic samples
    preview: tuple[int, torch.Tensor, torch.Tensor] | None = None  # (partition, x, y)
    sources: torch.Tensor | None = None  # the partition each server-side sample came from


@dataclass
class EvalResult:
    """One federated evaluation: per-client accuracy and its summary."""

    client_accuracy: dict[int, float]
    metrics: dict[str, float]


def _metric_record(metrics: dict[str, float]) -> MetricRecord:
    """``metrics`` as a MetricRecord (whose dict argument, invariant, wants its value type)."""
    values: dict[str, MetricRecordValues] = dict(metrics)
    return MetricRecord(values)


class AlgorithmStrategy(FedAvg):
    """Flower's FedAvg with the rounds of ``algorithm``.

    Parameters
    ----------
    algorithm : Algorithm
        The server side (see :func:`fedcore.algorithms.build_algorithm`).
    state : State
        The algorithm's state to start from (``algorithm.init`` of the initial model, or a
        checkpoint's); the strategy carries it from round to round.
    partitions : dict[int, int]
        ``node_id -> partition-id`` of every SuperNode (see ``discover_federation``).
    rounds : Rounds
        Sampling and evaluation cadence. A round needs ``rounds.train.minimum`` usable
        training replies, or every sampled client's when that is 0.
    max_examples : int
        Largest believable ``num-examples`` in a reply.
    assigned : bool
        The server assigned the partitions (``server.partition_map``, or the site index of a
        federation of sites): every message names its node's partition.
    static : bool | None
        The nodes never leave (Flower's simulation), so connected nodes need not be listed
        each round; None: as ``assigned`` (sites are assigned but may leave).
    """

    def __init__(
        self, algorithm: Algorithm, partitions: dict[int, int], rounds: Rounds,
        max_examples: int = 10**9, assigned: bool = False, static: bool | None = None,
        *, state: State,
    ) -> None:  # fmt: skip
        super().__init__(fraction_train=rounds.train.fraction)
        self.algorithm = algorithm
        self.state = state
        self.prepared: dict[str, float] = {}  # metrics of preparing the round in flight
        self.partitions = dict(partitions)
        self.rounds = rounds
        self.max_examples = max_examples
        self.assigned = assigned
        self.static = assigned if static is None else static
        self.global_state: StateDict = {}
        self.required = 1

    def sample(self, grid: Grid, server_round: int, purpose: int) -> dict[int, int]:
        """``partition-id -> node_id`` of this round's seeded sample of connected clients."""
        # assigned partitions: Flower's simulation, whose nodes never leave (listing them
        # costs O(federation) in its state each call)
        connected = set(self.partitions) if self.static else set(grid.get_node_ids())
        nodes = {p: n for n, p in self.partitions.items() if n in connected}
        everyone = list(self.partitions.values())
        sampling = (
            self.rounds.train
            if purpose == TRAIN
            else self.rounds.evaluation(server_round, len(everyone))
        )
        chosen = sample_partitions(
            everyone, sampling, self.rounds.seed, server_round, purpose, connected=nodes
        )
        wanted = sampling.size(len(everyone))
        if len(chosen) < wanted:
            log(WARNING, "only %d of the %d sampled clients are connected", len(chosen), wanted)
        return {p: nodes[p] for p in chosen}

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Messages to this round's sample, with what the algorithm sends (config, arrays)."""
        self.global_state = record_to_state(arrays)
        out = outgoing(self.algorithm, self.state, server_round, self.global_state)
        self.state, self.prepared = out.state, out.metrics
        for k, v in out.config.items():
            config[k] = v
        chosen = self.sample(grid, server_round, TRAIN)
        if not chosen:
            raise FederationError(f"round {server_round}: no SuperNode of the federation is up")
        self.required = self.rounds.train.minimum or len(chosen)
        log(INFO, "configure_train: sampled partitions %s", sorted(chosen))
        content = RecordDict({self.arrayrecord_key: arrays, self.configrecord_key: config})
        add_arrays(content, out.arrays)
        return self._messages(content, chosen, MessageType.TRAIN)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Evaluate messages to this round's sample (none between ``evaluate_every`` rounds)."""
        if not self.rounds.evaluates(server_round):
            return []
        config[SERVER_ROUND] = server_round
        chosen = self.sample(grid, server_round, EVALUATE)
        content = RecordDict({self.arrayrecord_key: arrays, self.configrecord_key: config})
        return self._messages(content, chosen, MessageType.EVALUATE)

    def _messages(self, content: RecordDict, chosen: dict[int, int], kind: str) -> list[Message]:
        """One message per chosen node; with assigned partitions each names its own."""
        if not self.assigned:
            return list(self._construct_messages(content, list(chosen.values()), kind))
        out: list[Message] = []
        for p, node in chosen.items():
            own = RecordDict(dict(content.items()))  # the same records, but its own config
            config = ConfigRecord(dict(content.config_records[self.configrecord_key]))
            config[PARTITION_ID], config[NUM_PARTITIONS] = p, len(self.partitions)
            own[self.configrecord_key] = config
            out += self._construct_messages(own, [node], kind)
        return out

    def partition_of(self, message: Message) -> int:
        """The partition of a message's destination node."""
        return self.partitions[message.metadata.dst_node_id]

    def _refuse(self, node: int, kind: str, reason: str) -> None:
        log(WARNING, "refused %s reply from node %d: %s", kind, node, reason)

    # ------------------------------------------------------------------ training
    def train_round(self, server_round: int, replies: Iterable[Message]) -> TrainResult:
        """Decode and check the replies, average, run the algorithm's server update."""
        expected = self.algorithm.reply_arrays(self.state)
        valid: list[TrainReply] = []
        refused = 0
        for msg in replies:
            reply = (
                f"client error: {msg.error.reason}"
                if msg.has_error()
                else decode_train_reply(msg.content, self.global_state, expected, self.max_examples)
            )
            node = msg.metadata.src_node_id
            if not isinstance(reply, str) and reply.partition_id != self.partitions.get(node):
                reply = f"partition-id {reply.partition_id} is not this node's partition"
            if isinstance(reply, str):
                refused += 1
                self._refuse(msg.metadata.src_node_id, "train", reply)
            else:
                valid.append(reply)
        if len(valid) < self.required:
            log(
                INFO,
                "aggregate_train: %d valid replies < minimum %d; keeping the global model",
                len(valid),
                self.required,
            )
            return TrainResult(None)
        self.state, step, metrics = aggregate(
            self.algorithm, self.state, server_round, self.global_state, valid
        )
        metrics = self.prepared | metrics | {"replies": len(valid), "refused": refused}
        preview = next(((r.partition_id, *r.preview) for r in valid if r.preview), None)
        return TrainResult(
            state_to_record(step.state), metrics, step.samples, preview, step.sources
        )

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Flower's signature over :meth:`train_round`."""
        result = self.train_round(server_round, replies)
        metrics = _metric_record(result.metrics) if result.arrays is not None else None
        return result.arrays, metrics

    # ---------------------------------------------------------------- evaluation
    def evaluate_round(self, server_round: int, replies: Iterable[Message]) -> EvalResult | None:
        """Every usable client's accuracy on its own test set, and their spread."""
        valid: list[EvalReply] = []
        for msg in replies:
            reply = (
                f"client error: {msg.error.reason}"
                if msg.has_error()
                else decode_eval_reply(msg.content, self.max_examples)
            )
            node = msg.metadata.src_node_id
            if not isinstance(reply, str) and reply.partition_id != self.partitions.get(node):
                reply = f"partition-id {reply.partition_id} is not this node's partition"
            if isinstance(reply, str):
                self._refuse(node, "evaluate", reply)
            else:
                valid.append(reply)
        if not valid:
            return None
        accuracy = {r.partition_id: r.accuracy for r in valid}
        metrics = fairness_summary(list(accuracy.values()))
        metrics["client_loss_mean"] = float(
            np.average([r.loss for r in valid], weights=[r.num_examples for r in valid])
        )
        return EvalResult(accuracy, metrics)

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Flower's signature over :meth:`evaluate_round`."""
        result = self.evaluate_round(server_round, replies)
        return _metric_record(result.metrics) if result else None

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> State:
        """What a checkpoint must hold to resume the algorithm exactly: its state."""
        return self.state

    def load_state_dict(self, state: State) -> None:
        self.state = state
