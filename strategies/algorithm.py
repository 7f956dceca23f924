"""One Flower strategy for every algorithm: a thin adapter over :mod:`fedcore.algorithms`.

Built on Flower's message-API ``FedAvg``: sampling and message construction are Flower's.
Each train message also carries what the algorithm asks of clients; each reply is decoded
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
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from flwr.supercore import log

from fedcore.algorithms import Algorithm
from fedcore.algorithms.fedavg import weighted_average
from fedcore.metrics import fairness_summary
from fedcore.protocol import (
    EvalReply,
    TrainReply,
    add_arrays,
    decode_eval_reply,
    decode_train_reply,
    record_to_state,
    state_to_record,
)


@dataclass
class TrainResult:
    """One training round: the new global arrays (None: keep the old) and what it produced."""

    arrays: ArrayRecord | None
    metrics: dict[str, float] = field(default_factory=dict)
    samples: tuple[torch.Tensor, torch.Tensor] | None = None  # server-side synthetic samples
    preview: tuple[int, torch.Tensor, torch.Tensor] | None = None  # (partition, x, y)


@dataclass
class EvalResult:
    """One federated evaluation: per-client accuracy and its summary."""

    client_accuracy: dict[int, float]
    metrics: dict[str, float]


class AlgorithmStrategy(FedAvg):
    """Flower's FedAvg with the rounds of ``algorithm``.

    Parameters
    ----------
    algorithm : Algorithm
        The server side (see :func:`fedcore.algorithms.build_algorithm`).
    num_clients : int
        SuperNodes in the federation; all are sampled each round.
    min_train_nodes : int
        Fewest usable training replies a round needs (0: ``num_clients``).
    max_examples : int
        Largest believable ``num-examples`` in a reply.
    """

    def __init__(
        self, algorithm: Algorithm, num_clients: int, min_train_nodes: int = 0,
        max_examples: int = 10**9,
    ) -> None:  # fmt: skip
        need = min_train_nodes or num_clients
        super().__init__(
            fraction_train=1.0,
            fraction_evaluate=1.0,
            min_train_nodes=need,
            min_evaluate_nodes=need,
            min_available_nodes=need,  # a lost node must not stall the next round
        )
        self.algorithm = algorithm
        self.max_examples = max_examples
        self.global_state: dict[str, torch.Tensor] = {}

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """FedAvg's messages plus what the algorithm sends (config entries, arrays)."""
        self.global_state = record_to_state(arrays)
        for k, v in self.algorithm.train_config(server_round).items():
            config[k] = v
        messages = list(super().configure_train(server_round, arrays, config, grid))
        extra = self.algorithm.train_arrays(server_round, self.global_state)
        for msg in messages:
            add_arrays(msg.content, extra)
        return messages

    def _refuse(self, node: int, kind: str, reason: str) -> None:
        log(WARNING, "refused %s reply from node %d: %s", kind, node, reason)

    # ------------------------------------------------------------------ training
    def train_round(self, server_round: int, replies: Iterable[Message]) -> TrainResult:
        """Decode and check the replies, average, run the algorithm's server update."""
        expected = self.algorithm.reply_arrays(self.global_state)
        valid: list[TrainReply] = []
        refused = 0
        for msg in replies:
            reply = (
                f"client error: {msg.error.reason}"
                if msg.has_error()
                else decode_train_reply(msg.content, self.global_state, expected, self.max_examples)
            )
            if isinstance(reply, str):
                refused += 1
                self._refuse(msg.metadata.src_node_id, "train", reply)
            else:
                valid.append(reply)
        if len(valid) < self.min_train_nodes:
            log(
                INFO,
                "aggregate_train: %d valid replies < minimum %d; keeping the global model",
                len(valid),
                self.min_train_nodes,
            )
            return TrainResult(None)
        # A fixed order (by partition) keeps the float sums, and so resumed runs, bit-exact.
        valid.sort(key=lambda r: r.partition_id)
        weights = [float(r.num_examples) for r in valid]
        averaged = weighted_average([r.state for r in valid], weights)
        step = self.algorithm.server_update(server_round, averaged, valid)
        metrics = _weighted_metrics([r.metrics for r in valid], weights) | step.metrics
        metrics |= {"replies": len(valid), "refused": refused}
        preview = next(((r.partition_id, *r.preview) for r in valid if r.preview), None)
        return TrainResult(state_to_record(step.state), metrics, step.samples, preview)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Flower's signature over :meth:`train_round`."""
        result = self.train_round(server_round, replies)
        metrics = MetricRecord(result.metrics) if result.arrays is not None else None
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
            if isinstance(reply, str):
                self._refuse(msg.metadata.src_node_id, "evaluate", reply)
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
        return MetricRecord(result.metrics) if result else None

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> dict:
        """What a checkpoint must hold to resume the algorithm exactly."""
        return self.algorithm.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.algorithm.load_state_dict(state)


def _weighted_metrics(records: list[dict], weights: list[float]) -> dict[str, float]:
    """Weighted mean of each scalar metric the replies share."""
    keys = set.intersection(*(set(r) for r in records))
    out: dict[str, float] = {}
    for k in sorted(keys):
        vals = [r[k] for r in records]
        if all(isinstance(v, int | float) for v in vals):
            out[k] = float(np.average(vals, weights=weights))
    return out
