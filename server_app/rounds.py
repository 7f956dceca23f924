"""The federation's SuperNodes and the round loop over the strategy.

:func:`partition_map` says which partition each SuperNode trains, as ``server.partition_map``
chooses: :func:`discover_federation` asks every connected SuperNode which partition it holds
(a ``query`` message each; deployment, where a SuperNode owns its data), and
:func:`assign_partitions` asks one node the federation's size and assigns the rest
(simulation, where every virtual SuperNode can load every partition: start-up then costs
the same at 10 or 10,000 nodes).
Either way the number of clients is typed once, in the federation (``num-supernodes`` /
each node's ``num-partitions``). Flower's ``Strategy.start`` always
begins at round 1; :func:`run_flower_rounds` takes a start round so a run can resume, and hands
every round's results to one callback as values.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from logging import INFO, WARNING

from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.app.message_type import MessageType
from flwr.serverapp import Grid
from flwr.supercore import log

from fedcore.experiment import ServerConfig
from fedcore.protocol import decode_partition
from strategies import AlgorithmStrategy, EvalResult, FederationError, TrainResult


@dataclass
class RoundOutcome:
    """Everything one round produced, handed to the round callback."""

    server_round: int
    arrays: ArrayRecord
    seconds: float
    train: TrainResult
    evaluation: EvalResult | None
    train_partitions: list[int]  # the partitions sampled to train
    eval_partitions: list[int]  # the partitions sampled for federated evaluation


RoundCallback = Callable[[RoundOutcome], None]


def discover_federation(grid: Grid, timeout: float, poll: float = 1.0) -> dict[int, int]:
    """``node_id -> partition-id`` once every partition's SuperNode is connected.

    Fails clearly when nodes disagree on ``num-partitions``, hold the same partition, are
    more than the federation's size, or do not all connect within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    parts: dict[int, int] = {}
    expected: int | None = None
    while True:
        new = [n for n in grid.get_node_ids() if n not in parts]
        if new:
            asks = [
                Message(RecordDict(), dst_node_id=n, message_type=MessageType.QUERY) for n in new
            ]
            for reply in grid.send_and_receive(asks, timeout=timeout):
                if reply.has_error():
                    raise FederationError(f"a SuperNode cannot join: {reply.error.reason}")
                pid, n = decode_partition(reply.content)
                if expected not in (None, n):
                    raise FederationError(
                        f"SuperNodes disagree on num-partitions ({expected} and {n}); start "
                        "every SuperNode with the same --node-config num-partitions"
                    )
                expected = n
                parts[reply.metadata.src_node_id] = pid
        if expected is not None:
            if len(parts) > expected:
                raise FederationError(
                    f"{len(parts)} SuperNodes are connected but they report num-partitions="
                    f"{expected}; start one SuperNode per partition"
                )
            if len(set(parts.values())) < len(parts):
                raise FederationError(f"two SuperNodes hold the same partition: {parts}")
            if len(parts) == expected:
                return parts
        if time.monotonic() > deadline:
            raise FederationError(
                f"only {len(parts)} of {expected or '?'} SuperNodes connected within "
                f"{timeout:.0f}s (server.connect_timeout)"
            )
        log(INFO, "Waiting for SuperNodes: %d of %s connected", len(parts), expected or "?")
        time.sleep(poll)


def in_simulation(grid: Grid) -> bool:
    """Whether this ServerApp runs under Flower's simulation engine (its in-memory grid)."""
    try:
        from flwr.superlink.grid import InMemoryGrid
    except ImportError:  # a Flower without it: treat as deployment
        return False
    return isinstance(grid, InMemoryGrid)


def assign_partitions(grid: Grid, timeout: float, poll: float = 0.5) -> dict[int, int]:
    """``node_id -> partition-id`` at a cost that does not grow with the federation: one
    SuperNode is asked the federation's size N, then, once N are connected, the i-th by node
    id trains partition i (the train and evaluate messages name it). Only where every
    SuperNode can load every partition (Flower's simulation); fails clearly when more than N
    connect or not all N within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    expected: int | None = None
    while True:
        nodes = sorted(grid.get_node_ids())
        if nodes and expected is None:
            ask = Message(RecordDict(), dst_node_id=nodes[0], message_type=MessageType.QUERY)
            for reply in grid.send_and_receive([ask], timeout=timeout):
                if reply.has_error():
                    raise FederationError(f"a SuperNode cannot join: {reply.error.reason}")
                expected = decode_partition(reply.content)[1]
        if expected is not None and len(nodes) > expected:
            raise FederationError(
                f"{len(nodes)} SuperNodes are connected but they report num-partitions="
                f"{expected}; start one SuperNode per partition"
            )
        if expected is not None and len(nodes) == expected:
            return {node: i for i, node in enumerate(nodes)}
        if time.monotonic() > deadline:
            raise FederationError(
                f"only {len(nodes)} of {expected or '?'} SuperNodes connected within "
                f"{timeout:.0f}s (server.connect_timeout)"
            )
        time.sleep(poll)


def partition_map(grid: Grid, server: ServerConfig) -> tuple[dict[int, int], bool]:
    """``node_id -> partition-id`` as ``server.partition_map`` says, and whether the
    partitions were assigned (then every message must name its node's partition).
    ``auto`` assigns under simulation without secure aggregation and queries otherwise."""
    mode = server.partition_map
    if mode == "auto":
        assign = in_simulation(grid) and not server.secure_aggregation
        mode = "assign" if assign else "query"
    if mode == "assign":
        if not in_simulation(grid):
            log(WARNING, "server.partition_map=assign outside simulation: each SuperNode "
                "trains the partition the server names, not its --node-config one")  # fmt: skip
        return assign_partitions(grid, server.connect_timeout), True
    return discover_federation(grid, server.connect_timeout), False


def run_flower_rounds(
    grid: Grid,
    strategy: AlgorithmStrategy,
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
        asks = list(strategy.configure_train(rnd, arrays, ConfigRecord(dict(config)), grid))
        replies = list(grid.send_and_receive(asks, timeout=timeout))
        train = strategy.train_round(rnd, replies)
        if train.arrays is None:
            reasons = {m.error.reason or "no reason given" for m in replies if m.has_error()}
            if replies and all(m.has_error() for m in replies):
                raise FederationError(
                    f"round {rnd}: every client failed: " + " | ".join(sorted(reasons))
                )
        else:
            arrays = train.arrays
        eval_asks = list(strategy.configure_evaluate(rnd, arrays, ConfigRecord(dict(config)), grid))
        evaluation = None
        if eval_asks:
            eval_replies = grid.send_and_receive(eval_asks, timeout=timeout)
            evaluation = strategy.evaluate_round(rnd, eval_replies)
        on_round(
            RoundOutcome(
                rnd, arrays, time.perf_counter() - t0, train, evaluation,
                sorted(strategy.partition_of(m) for m in asks),
                sorted(strategy.partition_of(m) for m in eval_asks),
            )
        )  # fmt: skip
    return arrays
