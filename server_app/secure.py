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


class _Rounds:
    """The callbacks the legacy workflow calls: each round's fit config and, after the
    secure average, the round's evaluation and record."""

    def __init__(self, grid: Grid, cfg: ExperimentConfig, strategy: AlgorithmStrategy,
                 names: list[str], on_round: RoundCallback) -> None:  # fmt: skip
        self.grid, self.cfg, self.strategy, self.names = grid, cfg, strategy, names
        self.on_round, self.clock, self.replies = on_round, time.perf_counter(), 0

    def record(self, ndarrays: list[np.ndarray]) -> ArrayRecord:
        arrays = (Array(np.ascontiguousarray(a)) for a in ndarrays)
        return ArrayRecord(OrderedDict(zip(self.names, arrays, strict=True)))

    def fit_config(self, server_round: int) -> dict:
        # Only algorithms that just average run here (validation refuses the others): they
        # prepare nothing, send no ArrayRecord and have no step after the average.
        algorithm = self.strategy.algorithm
        if algorithm.train_arrays(self.strategy.state, server_round):
            raise FederationError(f"{algorithm.name}: a SecAgg+ message carries only config")
        extra = algorithm.train_config(server_round)
        keys = ",".join(self.names)
        return {SERVER_ROUND: server_round, SEED: self.cfg.seed, STATE_KEYS: keys, **extra}

    def evaluate(self, server_round: int, ndarrays: list[np.ndarray], _config: dict):
        if server_round == 0:
            return None
        record = self.record(ndarrays)
        config = ConfigRecord({SEED: self.cfg.seed})
        asks = list(self.strategy.configure_evaluate(server_round, record, config, self.grid))
        evaluation = None
        if asks:
            replies = self.grid.send_and_receive(asks, timeout=self.cfg.server.round_timeout)
            evaluation = self.strategy.evaluate_round(server_round, replies)
        train = TrainResult(record, {"replies": self.replies, "refused": 0})
        sampled = sorted(self.strategy.partition_of(m) for m in asks)
        seconds = time.perf_counter() - self.clock
        self.on_round(RoundOutcome(server_round, record, seconds, train, evaluation, [], sampled))
        self.clock = time.perf_counter()
        return 0.0, {}


class _Counting(LegacyFedAvg):
    """Legacy FedAvg that tells the rounds how many replies its last round averaged."""

    def __init__(self, rounds: _Rounds, **kwargs) -> None:
        super().__init__(**kwargs)
        self.rounds = rounds

    def aggregate_fit(self, server_round, results: list[tuple[ClientProxy, FitRes]], failures):
        self.rounds.replies = len(results)
        return super().aggregate_fit(server_round, results, failures)


def _legacy_strategy(cfg: ExperimentConfig, arrays: ArrayRecord, rounds: _Rounds) -> _Counting:
    """The legacy FedAvg SecAgg+ drives: the config's sampling, our callbacks."""
    n = cfg.num_clients
    k = max(math.floor(cfg.server.fraction_train * n), cfg.server.min_train_nodes, 2)
    return _Counting(
        rounds,
        fraction_fit=cfg.server.fraction_train,
        fraction_evaluate=0.0,
        min_fit_clients=k,
        min_evaluate_clients=0,
        min_available_clients=n,
        evaluate_fn=rounds.evaluate,
        on_fit_config_fn=rounds.fit_config,
        initial_parameters=ndarrays_to_parameters(arrays.to_numpy_ndarrays()),
    )


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
    rounds = _Rounds(grid, cfg, strategy, list(arrays.keys()), on_round)
    legacy = _legacy_strategy(cfg, arrays, rounds)
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
    return rounds.record(context.state.array_records["parameters"].to_numpy_ndarrays())
