"""The round loop over a Flower strategy (train, federated evaluation, per-round hook).

Flower's ``Strategy.start`` always begins at round 1; this loop takes a start round so a
run can resume, and hands every round's results to one callback.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from logging import INFO

from flwr.app import ArrayRecord, ConfigRecord, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy
from flwr.supercore import log

RoundCallback = Callable[[int, ArrayRecord, float, MetricRecord | None, MetricRecord | None], None]


class FederationError(RuntimeError):
    """The federation cannot run (wrong node count, every client failing)."""


def wait_for_nodes(grid: Grid, expected: int, timeout: float, poll: float = 1.0) -> list[int]:
    """Wait until ``expected`` SuperNodes are connected; fail clearly on too many or too few."""
    deadline = time.monotonic() + timeout
    while True:
        nodes = list(grid.get_node_ids())
        if len(nodes) > expected:
            raise FederationError(
                f"{len(nodes)} SuperNodes are connected but the experiment has "
                f"partition.num_partitions={expected}; in simulation run `flwr run . "
                f"--federation-config num-supernodes={expected}`, or change "
                "partition.num_partitions"
            )
        if len(nodes) == expected:
            return nodes
        if time.monotonic() > deadline:
            raise FederationError(
                f"only {len(nodes)} of {expected} SuperNodes connected within {timeout:.0f}s; "
                f"in simulation run `flwr run . --federation-config num-supernodes={expected}`"
            )
        log(INFO, "Waiting for SuperNodes: %d of %d connected", len(nodes), expected)
        time.sleep(poll)


def run_rounds(
    grid: Grid,
    strategy: Strategy,
    arrays: ArrayRecord,
    num_rounds: int,
    config: ConfigRecord,
    timeout: float,
    on_round: RoundCallback,
    start_round: int = 1,
) -> ArrayRecord:
    """Rounds ``start_round..num_rounds``; returns the final global arrays."""
    for rnd in range(start_round, num_rounds + 1):
        t0 = time.perf_counter()
        replies = grid.send_and_receive(
            strategy.configure_train(rnd, arrays, ConfigRecord(dict(config)), grid),
            timeout=timeout,
        )
        replies = list(replies)
        new_arrays, train_metrics = strategy.aggregate_train(rnd, replies)
        if new_arrays is None:
            reasons = {m.error.reason for m in replies if m.has_error()}
            if replies and all(m.has_error() for m in replies):
                raise FederationError(
                    f"round {rnd}: every client failed: " + " | ".join(sorted(reasons))
                )
        else:
            arrays = new_arrays
        eval_replies = grid.send_and_receive(
            strategy.configure_evaluate(rnd, arrays, ConfigRecord(dict(config)), grid),
            timeout=timeout,
        )
        eval_metrics = strategy.aggregate_evaluate(rnd, eval_replies)
        on_round(rnd, arrays, time.perf_counter() - t0, train_metrics, eval_metrics)
    return arrays
