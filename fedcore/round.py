"""One federated round without any transport: the client update every ClientApp runs, the
aggregation every strategy runs, and a core round loop over both.

:func:`client_update` and :func:`aggregate` are what the Flower adapters call between
decoding and encoding records; :func:`run_round` chains them in one process and
:func:`run_rounds` loops it over a whole run (tests, the parity guard, the GPU check, the
paired cells on a machine without Flower).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from fedcore.algorithms import Algorithm, build_algorithm, client_hooks, model_problems
from fedcore.algorithms.base import ClientRound, LocalPlan, Received, ServerStep, State
from fedcore.algorithms.fedavg import weighted_average
from fedcore.attacks import permute_labels, poison
from fedcore.data import DataSpec
from fedcore.experiment import ConfigError, ExperimentConfig
from fedcore.federation import Federation
from fedcore.losses import LocalData, train_local
from fedcore.models import build_model
from fedcore.protocol import SEED, SERVER_ROUND, TrainReply, TrainRequest
from fedcore.sampling import TRAIN, Sampling, sample_partitions
from fedcore.seeds import client_seed
from fedcore.sites import ClientData
from fedcore.types import StateDict


@dataclass
class ClientUpdate:
    """What one client sends back: its model, weight, metrics, extra arrays, a preview."""

    state: StateDict
    num_examples: int
    metrics: dict[str, Any]
    arrays: dict[str, StateDict]
    preview: tuple[torch.Tensor, torch.Tensor] | None


def build_server(
    cfg: ExperimentConfig, spec: DataSpec, device: torch.device
) -> tuple[nn.Module, Algorithm]:
    """The seeded initial global model and the server side of ``cfg.algorithm``."""
    torch.manual_seed(cfg.seed)

    def make_model() -> nn.Module:
        return build_model(cfg.model.name, spec.channels, spec.num_classes)

    model = make_model()
    problems = model_problems(cfg.algorithm, cfg.sections(), model)
    if problems:
        raise ConfigError.listing(problems)
    names = tuple(n for n, _ in model.named_parameters())
    algorithm = build_algorithm(
        cfg.algorithm, cfg.sections(), cfg.run_context,
        spec=spec, make_model=make_model, device=device, param_names=names,
    )  # fmt: skip
    return model, algorithm


def client_update(
    cfg: ExperimentConfig,
    data: ClientData,
    partition_id: int,
    request: TrainRequest,
    state: dict[str, StateDict],
    device: torch.device,
) -> ClientUpdate:
    """Train the received model on this client's data with the hooks the request asks for.

    ``state`` is the client's persistent state; hooks read and update it in place. A client
    that the ``attack`` section makes an attacker poisons its data or its reply.
    """
    spec = data.spec
    attack = cfg.attack
    attacking = partition_id in attack.attackers(cfg.num_clients, cfg.seed)
    flip = attacking and attack.kind == "label_flip"
    model = build_model(cfg.model.name, spec.channels, spec.num_classes)
    model.load_state_dict(request.state)
    model.to(device)
    rnd = ClientRound(
        server_round=request.server_round,
        partition_id=partition_id,
        seed=client_seed(request.seed, request.server_round, partition_id),
        label_counts=data.counts[::-1].copy() if flip else data.counts,
        spec=spec,
        train=cfg.train,
        model=model,
        arrays=request.arrays,
        state=state,
        device=device,
    )
    plan = LocalPlan(LocalData.real(data.train))
    if flip:  # trains on y -> C - 1 - y (and believes its counts are so)
        own = plan.data.own_samples
        own.y = permute_labels(own.y, spec.num_classes)
    hooks = client_hooks(request.config, request.arrays)
    for hook in hooks:
        hook.before(rnd, plan)
    stats = train_local(
        model, plan.data, cfg.train, device=device, seed=rnd.seed,
        extra_terms=plan.regularizers, grad_correction=plan.grad_correction(),
    )  # fmt: skip
    for hook in hooks:
        hook.after(rnd, stats, plan)
    metrics = {"loss": stats.loss, "seconds": stats.seconds, **plan.metrics}
    trained, count = model.state_dict(), stats.num_examples
    if attacking:
        names = {n for n, _ in model.named_parameters()}
        trained = {k: v.detach().cpu() for k, v in trained.items()}
        trained, count = poison(attack, request.state, trained, count, names, rnd.seed)
    return ClientUpdate(trained, count, metrics, plan.arrays, plan.preview)


@dataclass(frozen=True)
class Outgoing:
    """What a round's train messages carry besides the global model, the algorithm's state
    after preparing them, and the preparation's metrics."""

    state: State
    config: dict[str, Any]
    arrays: dict[str, StateDict]
    metrics: dict[str, float]


def outgoing(
    algorithm: Algorithm, state: State, server_round: int, global_state: StateDict
) -> Outgoing:
    """Prepare the round (:meth:`Algorithm.prepare`), then what its messages carry."""
    state, metrics = algorithm.prepare(state, server_round, global_state)
    config = {SERVER_ROUND: server_round, SEED: algorithm.setup.run.seed}
    config |= algorithm.train_config(server_round)
    return Outgoing(state, config, algorithm.train_arrays(state, server_round), metrics)


def aggregate(
    algorithm: Algorithm,
    state: State,
    server_round: int,
    sent: StateDict,
    replies: Sequence[TrainReply],
) -> tuple[State, ServerStep, dict[str, float]]:
    """FedAvg's example-weighted average, then the algorithm's step (:meth:`Algorithm.apply`).

    Replies are taken in partition order (fixed float sums: resumed runs stay bit-exact).
    Returns the new state, the step and the round's client metrics (counts summed, the rest
    averaged) with the step's.
    """
    ordered = sorted(replies, key=lambda r: r.partition_id)
    weights = [float(r.num_examples) for r in ordered]
    averaged = weighted_average([r.state for r in ordered], weights)
    state, step = algorithm.apply(state, Received(server_round, sent, averaged, ordered))
    metrics = weighted_metrics([r.metrics for r in ordered], weights) | step.metrics
    return state, step, metrics


def weighted_metrics(records: list[dict], weights: list[float]) -> dict[str, float]:
    """Each scalar metric the replies share: summed for counts (keys ending ``-count``),
    else the example-weighted mean."""
    keys = set.intersection(*(set(r) for r in records))
    out: dict[str, float] = {}
    for k in sorted(keys):
        vals = [r[k] for r in records]
        if all(isinstance(v, int | float) for v in vals):
            total = k.endswith("-count")
            out[k] = float(np.sum(vals) if total else np.average(vals, weights=weights))
    return out


def run_round(
    cfg: ExperimentConfig,
    algorithm: Algorithm,
    state: State,
    fed: Federation,
    global_state: StateDict,
    server_round: int,
    partitions: Sequence[int],
    client_states: dict[int, dict[str, StateDict]],
    device: torch.device,
) -> tuple[State, ServerStep, dict[str, float]]:
    """One round in this process: the sampled ``partitions`` train, the server aggregates.
    Returns the algorithm's new state, the step and the round's metrics."""
    out = outgoing(algorithm, state, server_round, global_state)
    seed = algorithm.setup.run.seed
    request = TrainRequest(global_state, server_round, seed, out.config, out.arrays)
    replies = []
    for pid in partitions:
        own = client_states.setdefault(pid, {})
        up = client_update(cfg, fed.client(pid), pid, request, own, device)
        trained = {k: v.detach().cpu() for k, v in up.state.items()}
        replies.append(TrainReply(pid, up.num_examples, trained, up.metrics, up.arrays, up.preview))
    state, step, metrics = aggregate(algorithm, out.state, server_round, global_state, replies)
    return state, step, out.metrics | metrics


@dataclass
class RoundResult:
    """One round of :func:`run_rounds`: who trained, the server's step and the round's metrics,
    the global model with the new state loaded, and the round's seconds (train + aggregate)."""

    server_round: int
    partitions: list[int]
    step: ServerStep
    metrics: dict[str, float]
    model: nn.Module
    seconds: float


def run_rounds(
    cfg: ExperimentConfig, fed: Federation, device: torch.device
) -> Iterator[RoundResult]:
    """The core round loop: the seeded server, then ``cfg.rounds`` rounds, each training the
    clients that ``server.fraction_train`` and ``server.min_train_nodes`` draw (the draw the
    Flower strategies make) and aggregating.

    Each result's ``model`` is the same module, updated in place: copy what must outlive the
    next round. Client state persists across rounds as in a ClientApp's context.
    """
    model, algorithm = build_server(cfg, fed.train.spec, device)
    sampling = Sampling(cfg.server.fraction_train, cfg.server.min_train_nodes)
    state = model.state_dict()
    algo_state = algorithm.init(state)
    client_states: dict[int, dict[str, StateDict]] = {}
    for rnd in range(1, cfg.rounds + 1):
        t0 = time.perf_counter()
        parts = sample_partitions(range(cfg.num_clients), sampling, cfg.seed, rnd, TRAIN)
        algo_state, step, metrics = run_round(
            cfg, algorithm, algo_state, fed, state, rnd, parts, client_states, device
        )
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        state = step.state
        model.load_state_dict(state)
        yield RoundResult(rnd, parts, step, metrics, model, time.perf_counter() - t0)
