"""FedAvg with example-weighted averaging in the core and fairness-aware evaluation.

Built on Flower's message-API ``FedAvg``: sampling and message construction are Flower's;
averaging is :func:`fedtask.aggregation.weighted_average` (dtype-preserving, so BatchNorm's
integer counters stay integers); federated evaluation is summarised per client (mean, std,
worst-10%, best-10%) instead of one weighted mean. Subclasses refine the averaged state in
:meth:`refine`.
"""

from __future__ import annotations

from collections.abc import Iterable
from logging import INFO

import numpy as np
import torch
from flwr.app import ArrayRecord, Message, MetricRecord
from flwr.serverapp.strategy import FedAvg
from flwr.supercore import log

from fedtask.aggregation import weighted_average
from fedtask.flower import record_to_state, state_to_record
from fedtask.metrics import fairness_summary

NUM_EXAMPLES = "num-examples"
PARTITION_ID = "partition-id"


class FairFedAvg(FedAvg):
    """FedAvg over every client every round, reporting per-client accuracy spread.

    Parameters
    ----------
    num_partitions : int
        Expected number of SuperNodes (one partition each); all are sampled each round.
    min_train_nodes : int | None
        Fewest training replies a round needs; defaults to ``num_partitions``.
    """

    def __init__(self, num_partitions: int, min_train_nodes: int | None = None) -> None:
        need = num_partitions if min_train_nodes is None else min_train_nodes
        super().__init__(
            fraction_train=1.0,
            fraction_evaluate=1.0,
            min_train_nodes=need,
            min_evaluate_nodes=need,
            min_available_nodes=num_partitions,
        )
        self.num_partitions = num_partitions
        self.client_accuracy: dict[int, float] = {}
        self.round_info: dict[str, float] = {}

    # ------------------------------------------------------------------ training
    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Average the replies' models weighted by ``num-examples``, then :meth:`refine`."""
        self.round_info = {}
        valid, errors = self._check_and_log_replies(replies, is_train=True)
        if len(valid) < self.min_train_nodes:
            log(INFO, "aggregate_train: %d valid replies < minimum %d; keeping the global model",
                len(valid), self.min_train_nodes)  # fmt: skip
            return None, None
        contents = [m.content for m in valid]
        weights = [float(c.metric_records["metrics"][NUM_EXAMPLES]) for c in contents]
        states = [record_to_state(c.array_records["arrays"]) for c in contents]
        averaged = weighted_average(states, weights)
        refined = self.refine(server_round, averaged, contents)
        metrics = _weighted_metrics([c.metric_records["metrics"] for c in contents], weights)
        metrics.update(self.round_info)
        metrics["replies"] = len(valid)
        metrics["failures"] = len(errors)
        return state_to_record(refined), metrics

    def refine(self, server_round: int, averaged: dict[str, torch.Tensor], contents: list
               ) -> dict[str, torch.Tensor]:  # fmt: skip
        """Hook for server-side work on the averaged model; FedAvg returns it unchanged."""
        return averaged

    # ---------------------------------------------------------------- evaluation
    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Summarise every client's accuracy on its own test set."""
        valid, _ = self._check_and_log_replies(replies, is_train=False)
        self.client_accuracy = {}
        if not valid:
            return None
        losses, weights = [], []
        for m in valid:
            rec = m.content.metric_records["metrics"]
            self.client_accuracy[int(rec[PARTITION_ID])] = float(rec["accuracy"])
            losses.append(float(rec["loss"]))
            weights.append(float(rec[NUM_EXAMPLES]))
        out = MetricRecord(fairness_summary(list(self.client_accuracy.values())))
        out["client_loss_mean"] = float(np.average(losses, weights=weights))
        return out


def _weighted_metrics(records: list[MetricRecord], weights: list[float]) -> MetricRecord:
    """Weighted mean of each scalar metric the replies share (identifiers excluded)."""
    skip = {NUM_EXAMPLES, PARTITION_ID}
    keys = set.intersection(*(set(r.keys()) for r in records)) - skip
    out = MetricRecord()
    for k in sorted(keys):
        vals = [r[k] for r in records]
        if all(isinstance(v, int | float) for v in vals):
            out[k] = float(np.average(vals, weights=weights))
    return out
