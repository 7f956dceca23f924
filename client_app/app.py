"""The ClientApp: local training on this SuperNode's partition, evaluation on its own test set."""

from __future__ import annotations

import torch
from flwr.app import Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedtask.config import ExperimentConfig
from fedtask.federation import build_federation
from fedtask.flower import experiment_config, partition_of, record_to_state, state_to_record
from fedtask.models import build_model, get_device
from fedtask.training import evaluate, train_local

app = ClientApp()


def _model_from(msg: Message, cfg: ExperimentConfig, in_channels: int, num_classes: int
                ) -> torch.nn.Module:  # fmt: skip
    model = build_model(cfg.model.name, in_channels, num_classes)
    model.load_state_dict(record_to_state(msg.content["arrays"]))
    return model


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train the received global model on the local partition and send it back."""
    cfg = experiment_config(context)
    pid = partition_of(context, cfg)
    fed = build_federation(cfg)
    trainset, _ = fed.client_datasets(pid)
    model = _model_from(msg, cfg, fed.train.input_shape[0], fed.train.num_classes)
    config = msg.content["config"]
    server_round = int(config["server-round"])
    stats = train_local(
        model,
        trainset,
        cfg.train,
        device=get_device(),
        seed=(cfg.seed * 1_000_003 + server_round) * 1_009 + pid,
        prox_mu=float(config.get("proximal-mu", 0.0)),
    )
    metrics = MetricRecord({
        "num-examples": stats.num_examples,
        "partition-id": pid,
        "loss": stats.loss,
        "seconds": stats.seconds,
    })  # fmt: skip
    content = RecordDict({"arrays": state_to_record(model.state_dict()), "metrics": metrics})
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate_local(msg: Message, context: Context) -> Message:
    """Evaluate the received global model on this client's own test set."""
    cfg = experiment_config(context)
    pid = partition_of(context, cfg)
    fed = build_federation(cfg)
    _, testset = fed.client_datasets(pid)
    model = _model_from(msg, cfg, fed.train.input_shape[0], fed.train.num_classes)
    ev = evaluate(model, testset, device=get_device())
    metrics = MetricRecord({
        "num-examples": len(testset),
        "partition-id": pid,
        "accuracy": float(ev["accuracy"]),
        "loss": float(ev["loss"]),
    })  # fmt: skip
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)
