"""The server half of secure aggregation (SecAgg+): the rounds of an algorithm whose server
only averages (fedavg, fedprox, fedlc, zdac), with no single client's model ever seen.

Flower 1.42's ``SecAggPlusWorkflow`` drives a legacy ``Strategy`` inside ``DefaultWorkflow``
(see docs/deployment.md, *Secure aggregation*). The legacy FedAvg here sends the model in
``state_dict`` order with the algorithm's train config and the parameter names
(``state-keys``); after each round's secure sum its ``evaluate_fn`` hands the new model to
the same round callback as the ordinary loop, with the federated evaluation of that round
(Message-API evaluate messages, which SecAgg+ leaves alone). Clients are sampled by the
legacy client manager (``fraction_train``), not by this app's seeded per-round permutation.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context
from flwr.common import FitRes, ndarrays_to_parameters
from flwr.server import LegacyContext, ServerConfig
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import FedAvg as LegacyFedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.serverapp import Grid

from fedcore.config import ExperimentConfig
from fedcore.protocol import SEED, SERVER_ROUND, STATE_KEYS
from server_app.rounds import RoundCallback, RoundOutcome
from strategies import AlgorithmStrategy, FederationError, TrainResult

# Parameters are clipped to +-CLIP and quantised to QUANT levels before masking: wide enough
# for BatchNorm running variances, fine enough (4e-6) for the weights; QUANT times the
# number of clients stays below Flower's 2**32 modulus for up to 256 clients per round.
CLIP, QUANT = 32.0, 2**24


class _Counting(LegacyFedAvg):
    """Legacy FedAvg that remembers how many replies its last round averaged."""

    replies = 0

    def aggregate_fit(self, server_round, results: list[tuple[ClientProxy, FitRes]], failures):
        self.replies = len(results)
        return super().aggregate_fit(server_round, results, failures)


def run_secure_rounds(
    grid: Grid,
    context: Context,
    cfg: ExperimentConfig,
    strategy: AlgorithmStrategy,
    arrays: ArrayRecord,
    max_examples: int,
    on_round: RoundCallback,
) -> ArrayRecord:
    """All rounds under SecAgg+; returns the final global arrays."""
    names = list(arrays.keys())
    algorithm = strategy.algorithm
    clock = [time.perf_counter()]

    def to_record(ndarrays: list[np.ndarray]) -> ArrayRecord:
        arrays = (Array(np.ascontiguousarray(a)) for a in ndarrays)
        return ArrayRecord(OrderedDict(zip(names, arrays, strict=True)))

    def fit_config(server_round: int) -> dict:
        # Only algorithms that just average run here (validation refuses the others): they
        # prepare nothing, send no ArrayRecord and have no step after the average.
        if algorithm.train_arrays(strategy.state, server_round):
            raise FederationError(f"{algorithm.name}: a SecAgg+ message carries only config")
        extra = algorithm.train_config(server_round)
        return {SERVER_ROUND: server_round, SEED: cfg.seed, STATE_KEYS: ",".join(names), **extra}

    def evaluate_fn(server_round: int, ndarrays: list[np.ndarray], _config: dict):
        if server_round == 0:
            return None
        record = to_record(ndarrays)
        config = ConfigRecord({SEED: cfg.seed})
        asks = list(strategy.configure_evaluate(server_round, record, config, grid))
        evaluation = None
        if asks:
            replies = grid.send_and_receive(asks, timeout=cfg.server.round_timeout)
            evaluation = strategy.evaluate_round(server_round, replies)
        now = time.perf_counter()
        train = TrainResult(record, {"replies": legacy.replies, "refused": 0})
        on_round(RoundOutcome(server_round, record, now - clock[0], train, evaluation, [],
                              sorted(strategy.partition_of(m) for m in asks)))  # fmt: skip
        clock[0] = time.perf_counter()
        return 0.0, {}

    n = cfg.num_clients
    k = max(math.floor(cfg.server.fraction_train * n), cfg.server.min_train_nodes, 2)
    legacy = _Counting(
        fraction_fit=cfg.server.fraction_train,
        fraction_evaluate=0.0,
        min_fit_clients=k,
        min_evaluate_clients=0,
        min_available_clients=n,
        evaluate_fn=evaluate_fn,
        on_fit_config_fn=fit_config,
        initial_parameters=ndarrays_to_parameters(arrays.to_numpy_ndarrays()),
    )
    context = LegacyContext(context, ServerConfig(num_rounds=cfg.rounds), strategy=legacy)
    secagg = SecAggPlusWorkflow(
        num_shares=1.0,  # every sampled client holds a share of every other's key
        reconstruction_threshold=0.5,
        max_weight=float(max_examples),
        clipping_range=CLIP,
        quantization_range=QUANT,
        timeout=cfg.server.round_timeout,
    )
    DefaultWorkflow(fit_workflow=secagg)(grid, context)
    return to_record(context.state.array_records["parameters"].to_numpy_ndarrays())
