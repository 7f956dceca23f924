"""The ClientApp: local training on this SuperNode's partition, evaluation on its own test set."""

from __future__ import annotations

import torch
from flwr.app import Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from torch import nn

from fedtask.config import ExperimentConfig
from fedtask.faults import corrupt_update, kind_for_round
from fedtask.federation import Federation, build_federation
from fedtask.flower import (
    NUM_EXAMPLES,
    PARTITION_ID,
    experiment_config,
    partition_of,
    record_to_state,
    state_to_record,
)
from fedtask.models import build_model, get_device
from fedtask.scaffold import client_control_update, correction, zeros_like_params
from fedtask.training import Synthetic, evaluate, train_local
from inversion.pool import SyntheticPool
from inversion.zdac import zdac_augment

app = ClientApp()
POOL_KEY = "zdac-pool"
SCAFFOLD_C, SCAFFOLD_DC, SCAFFOLD_CI = "scaffold-c", "scaffold-dc", "scaffold-ci"
PREVIEW_PER_CLASS = 2
StateDict = dict[str, torch.Tensor]


def _load_pool(context: Context) -> SyntheticPool:
    rec = context.state.array_records.get(POOL_KEY)
    return SyntheticPool.from_state(record_to_state(rec) if rec is not None else {})


def _preview(x: torch.Tensor, y: torch.Tensor, num_classes: int) -> dict[str, list[float]]:
    """A few synthetic samples per class, flattened, for the server's image grid."""
    keep = torch.cat(
        [torch.nonzero(y == c).flatten()[:PREVIEW_PER_CLASS] for c in range(num_classes)]
    )
    return {"preview-x": x[keep].flatten().tolist(), "preview-y": y[keep].float().tolist()}


def _setup(msg: Message, context: Context) -> tuple[ExperimentConfig, int, Federation, nn.Module]:
    """This run's config, this node's partition, the data, and the received model."""
    cfg = experiment_config(context)
    pid = partition_of(context, cfg)
    fed = build_federation(cfg)
    model = build_model(cfg.model.name, fed.train.input_shape[0], fed.train.num_classes)
    model.load_state_dict(record_to_state(msg.content["arrays"]))
    return cfg, pid, fed, model


def _zdac(
    cfg: ExperimentConfig,
    pid: int,
    fed: Federation,
    model: nn.Module,
    context: Context,
    server_round: int,
    seed: int,
) -> tuple[Synthetic | None, dict]:
    """ZDAC: invert the received model (warm-started from this node's pool) so the local
    class mix becomes balanced; keeps the pool in ``context.state``."""
    pool = _load_pool(context)
    t = fed.train
    outcome = zdac_augment(
        model, fed.counts[pid], cfg.zdac, pool, server_round,
        input_shape=t.input_shape, mean=t.mean, std=t.std, device=get_device(), seed=seed,
    )  # fmt: skip
    metrics = dict(outcome.metrics)
    if not pool.is_empty():
        context.state[POOL_KEY] = state_to_record(pool.state())
    if pid == cfg.zdac.preview_client and outcome.synthetic is not None:
        metrics |= _preview(outcome.synthetic.x, outcome.synthetic.y, t.num_classes)
    return outcome.synthetic, metrics


def _scaffold_variates(msg: Message, context: Context) -> tuple[StateDict, StateDict]:
    """The server control variate ``c`` and this node's ``c_i`` (zeros on its first round)."""
    c = record_to_state(msg.content[SCAFFOLD_C])
    rec = context.state.array_records.get(SCAFFOLD_CI)
    return c, record_to_state(rec) if rec is not None else zeros_like_params(c)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train the received global model on the local partition and send it back."""
    cfg, pid, fed, model = _setup(msg, context)
    trainset, _ = fed.client_datasets(pid)
    config = msg.content["config"]
    server_round = int(config["server-round"])
    seed = (cfg.seed * 1_000_003 + server_round) * 1_009 + pid
    extra: dict = {}
    synthetic = None
    if cfg.algorithm in ("zdac", "zda"):
        synthetic, extra = _zdac(cfg, pid, fed, model, context, server_round, seed)
    if cfg.algorithm in ("zdas", "zda") and cfg.zdas.use_label_counts:
        extra["label-counts"] = [int(c) for c in fed.counts[pid]]  # opted in to share these
    c = c_i = None
    if cfg.algorithm == "scaffold":
        c, c_i = _scaffold_variates(msg, context)
    names = [n for n, _ in model.named_parameters()]
    x0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    stats = train_local(
        model,
        trainset,
        cfg.train,
        device=get_device(),
        seed=seed,
        prox_mu=float(config.get("proximal-mu", 0.0)),
        grad_correction=correction(c, c_i, names) if c is not None else None,
        synthetic=synthetic,
    )
    extra_arrays = {}
    if c is not None and c_i is not None:
        y = {n: p.detach().cpu() for n, p in model.named_parameters()}
        c_i_new, delta = client_control_update(
            c, c_i, x0, y, max(stats.steps, 1), cfg.train.lr, cfg.train.momentum
        )
        context.state[SCAFFOLD_CI] = state_to_record(c_i_new)
        extra_arrays[SCAFFOLD_DC] = state_to_record(delta)
    state, num_examples = model.state_dict(), stats.num_examples
    if pid == cfg.faults.bad_update_partition:  # fault injection (tests only)
        kind = kind_for_round(cfg.faults.bad_update_kinds.split(","), server_round)
        state, num_examples = corrupt_update(state, num_examples, kind)
    metrics = MetricRecord(
        {
            NUM_EXAMPLES: num_examples,
            PARTITION_ID: pid,
            "loss": stats.loss,
            "seconds": stats.seconds,
            **extra,
        }
    )
    content = RecordDict({"arrays": state_to_record(state), "metrics": metrics, **extra_arrays})
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate_local(msg: Message, context: Context) -> Message:
    """Evaluate the received global model on this client's own test set."""
    _, pid, fed, model = _setup(msg, context)
    _, testset = fed.client_datasets(pid)
    ev = evaluate(model, testset, device=get_device())
    metrics = MetricRecord(
        {
            NUM_EXAMPLES: len(testset),
            PARTITION_ID: pid,
            "accuracy": float(ev["accuracy"]),
            "loss": float(ev["loss"]),
        }
    )
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)
