"""FedAvg with example-weighted averaging in the core and fairness-aware evaluation.

Built on Flower's message-API ``FedAvg``: sampling and message construction are Flower's;
averaging is :func:`fedtask.aggregation.weighted_average` (dtype-preserving, so BatchNorm's
integer counters stay integers); federated evaluation is summarised per client (mean, std,
worst-10%, best-10%) instead of one weighted mean. Subclasses refine the averaged state in
:meth:`refine`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from logging import INFO, WARNING

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from flwr.supercore import log

from fedtask.aggregation import weighted_average
from fedtask.flower import record_to_state, state_to_record
from fedtask.metrics import fairness_summary
from fedtask.models import get_device
from strategies.validation import NUM_EXAMPLES, PARTITION_ID, check_arrays, check_metrics


class FairFedAvg(FedAvg):
    """FedAvg over every client every round, reporting per-client accuracy spread.

    Parameters
    ----------
    num_partitions : int
        Expected number of SuperNodes (one partition each); all are sampled each round.
    min_train_nodes : int | None
        Fewest training replies a round needs; defaults to ``num_partitions``.
    proximal_mu : float
        When > 0, sent to clients as ``proximal-mu`` (FedProx's local term; composes with
        every algorithm).
    """

    def __init__(
        self,
        num_partitions: int,
        min_train_nodes: int | None = None,
        proximal_mu: float = 0.0,
        max_examples: int = 10**9,
    ) -> None:
        need = num_partitions if min_train_nodes is None else min_train_nodes
        super().__init__(
            fraction_train=1.0,
            fraction_evaluate=1.0,
            min_train_nodes=need,
            min_evaluate_nodes=need,
            min_available_nodes=need,  # a lost node must not stall the next round
        )
        self.num_partitions = num_partitions
        self.proximal_mu = proximal_mu
        self.max_examples = max_examples
        self.global_state: dict[str, torch.Tensor] = {}
        self.device = get_device()
        self.client_accuracy: dict[int, float] = {}
        self.round_info: dict[str, float] = {}
        self.client_preview: tuple[int, list[float], list[float]] | None = None
        # Further ArrayRecords a train reply must carry: name -> reference tensors.
        self.extra_arrays: dict[str, Callable[[], dict[str, torch.Tensor]]] = {}

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Configure as FedAvg, adding ``proximal-mu`` when the proximal term is on."""
        if self.proximal_mu > 0:
            config["proximal-mu"] = self.proximal_mu
        self.global_state = record_to_state(arrays)
        return super().configure_train(server_round, arrays, config, grid)

    def _usable(self, replies: Iterable[Message], train: bool) -> tuple[list[Message], int]:
        """Replies that passed every check; the rest are logged, one line per node."""
        ok, refused = [], 0
        required = (NUM_EXAMPLES, PARTITION_ID) + (() if train else ("accuracy", "loss"))
        for msg in replies:
            node = msg.metadata.src_node_id
            if msg.has_error():
                reason = f"client error: {msg.error.reason}"
            else:
                reason = check_metrics(msg.content, required, self.max_examples)
                if reason is None and train:
                    extra = {k: ref() for k, ref in self.extra_arrays.items()}
                    reason = check_arrays(msg.content, self.global_state, extra)
            if reason is None:
                ok.append(msg)
            else:
                refused += 1
                log(
                    WARNING,
                    "refused %s reply from node %d: %s",
                    "train" if train else "evaluate",
                    node,
                    reason,
                )
        return ok, refused

    # ------------------------------------------------------------------ training
    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Average the replies' models weighted by ``num-examples``, then :meth:`refine`."""
        self.round_info = {}
        valid, refused = self._usable(replies, train=True)
        if len(valid) < self.min_train_nodes:
            log(
                INFO,
                "aggregate_train: %d valid replies < minimum %d; keeping the global model",
                len(valid),
                self.min_train_nodes,
            )
            return None, None
        # A fixed order (by partition) keeps the float sums, and so resumed runs, bit-exact.
        valid.sort(key=lambda m: int(m.content.metric_records["metrics"][PARTITION_ID]))
        contents = [m.content for m in valid]
        self.client_preview = None
        for c in contents:
            m = c.metric_records["metrics"]
            if "preview-x" in m and "preview-y" in m:
                self.client_preview = (int(m[PARTITION_ID]), m["preview-x"], m["preview-y"])
        weights = [float(c.metric_records["metrics"][NUM_EXAMPLES]) for c in contents]
        states = [record_to_state(c.array_records["arrays"]) for c in contents]
        averaged = weighted_average(states, weights)
        refined = self.refine(server_round, averaged, contents)
        metrics = _weighted_metrics([c.metric_records["metrics"] for c in contents], weights)
        metrics.update(self.round_info)
        metrics["replies"] = len(valid)
        metrics["refused"] = refused
        return state_to_record(refined), metrics

    def state_dict(self) -> dict:
        """What a checkpoint must hold to resume this strategy exactly (nothing for FedAvg)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""

    def refine(
        self, server_round: int, averaged: dict[str, torch.Tensor], contents: list
    ) -> dict[str, torch.Tensor]:
        """Hook for server-side work on the averaged model; FedAvg returns it unchanged."""
        return averaged

    # ---------------------------------------------------------------- evaluation
    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Summarise every client's accuracy on its own test set."""
        valid, _ = self._usable(replies, train=False)
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
