"""The ClientApp: local training with whatever the train message asks for, evaluation on
this client's own test set, and a query that says which partition this SuperNode holds.
A message may name the partition to use instead (the server's ``server.partition_map``:
under simulation every virtual SuperNode can load every partition).

A thin adapter: the algorithms' client hooks (:func:`fedcore.algorithms.client_hooks`) are
chosen from the message, not from this node's copy of the run config; their persistent
state lives in Flower's ``Context.state``.
"""

from __future__ import annotations

import json
import os
import time
from logging import INFO, WARNING

from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.common.logger import log

from client_app.secure import secure_aggregation_mod
from fedcore.config import ExperimentConfig, experiment_config
from fedcore.data import DatasetError
from fedcore.faults import corrupt_update, kind_for_round
from fedcore.federation import build_federation
from fedcore.models import build_model, get_device
from fedcore.protocol import (
    ARRAYS,
    DATA_PATH,
    SITE_NAME,
    TEST_SEED,
    TEST_SHARE,
    EvalReply,
    SiteQuery,
    asked,
    assigned_partition,
    decode_train_request,
    encode_eval_reply,
    encode_partition,
    encode_site_report,
    encode_train_reply,
    node_partition,
    number,
    record_to_state,
    site_normalisation,
    state_to_record,
)
from fedcore.round import client_update
from fedcore.sites import (
    ClientData,
    SitePixels,
    client_data,
    misfit,
    read_site,
    site_summary,
)
from fedcore.sitespec import parse_shape
from fedcore.training import evaluate
from fedcore.types import StateDict

app = ClientApp(mods=[secure_aggregation_mod])  # passes every non-SecAgg+ message through


def _setup(msg: Message, context: Context) -> tuple[ExperimentConfig, int, ClientData]:
    """This run's config on this federation, the partition id to answer as, and the data:
    a site's own files (node key ``data-path``), else the partition the message assigns or
    this node's own, cut from the whole dataset (simulation, the partitioned demo)."""
    if DATA_PATH in context.node_config:
        pid, n = _site_index(msg)
        cfg = experiment_config(context.run_config).with_clients(n)
        mean, std, classes = site_normalisation(msg.content)
        return cfg, pid, client_data(_site(context.node_config), mean, std, classes)
    pid, n = assigned_partition(msg.content) or node_partition(context.node_config)
    cfg = experiment_config(context.run_config).with_clients(n)
    return cfg, pid, build_federation(cfg).client(pid)


def _site_index(msg: Message) -> tuple[int, int]:
    assigned = assigned_partition(msg.content)
    if assigned is None:
        raise ValueError("this SuperNode holds site data (data-path) but the message names no "
                         "site index: run with data.dataset='sites'")  # fmt: skip
    return assigned


def _site(node_config: dict) -> SitePixels:
    """This SuperNode's own data, read once (node keys: docs/deployment.md)."""
    return read_site(
        str(node_config[DATA_PATH]),
        str(node_config.get(SITE_NAME, "")),
        float(node_config.get(TEST_SHARE, 0.2)),
        int(node_config.get(TEST_SEED, 0)),
    )


def _model(cfg: ExperimentConfig, data: ClientData, state: StateDict):
    spec = data.spec
    model = build_model(cfg.model.name, spec.channels, spec.num_classes)
    model.load_state_dict(state)
    return model


def record_node(partition_id: int, server_round: int) -> None:
    """With ``FEDZDA_NODE_LOG`` set, append which Ray node (and process) this ClientApp ran
    on: the evidence that a multi-node simulation spreads clients over its nodes."""
    path = os.environ.get("FEDZDA_NODE_LOG")
    if not path:
        return
    try:
        import ray  # present under the simulation engine only

        node = ray.get_runtime_context().get_node_id()
    except Exception:  # not inside a Ray worker
        node = ""
    row = {"partition": partition_id, "round": server_round, "ray_node": node, "pid": os.getpid()}
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train the received global model on the local partition and send it back."""
    cfg, pid, data = _setup(msg, context)
    req = decode_train_request(msg.content)
    if pid == cfg.faults.hang_partition:  # fault injection (tests): provably no reply
        log(INFO, "fedzda: partition %d hangs in round %d (faults.hang_partition)", pid,
            req.server_round)  # fmt: skip
        while True:
            time.sleep(1.0)
    record_node(pid, req.server_round)
    state = {k: record_to_state(v) for k, v in context.state.array_records.items()}
    up = client_update(cfg, data, pid, req, state, get_device())
    for key, value in state.items():
        context.state[key] = state_to_record(value)
    model_state, num_examples = up.state, up.num_examples
    if pid == cfg.faults.bad_update_partition:  # fault injection (tests only)
        kind = kind_for_round(cfg.faults.bad_update_kinds.split(","), req.server_round)
        model_state, num_examples = corrupt_update(model_state, num_examples, kind)
    reply = encode_train_reply(model_state, num_examples, pid, up.metrics, up.arrays, up.preview)
    return Message(content=reply, reply_to=msg)


@app.evaluate()
def evaluate_local(msg: Message, context: Context) -> Message:
    """Evaluate the received global model on this client's own test set."""
    cfg, pid, data = _setup(msg, context)
    model = _model(cfg, data, record_to_state(msg.content.array_records[ARRAYS]))
    ev = evaluate(model, data.test, device=get_device())
    reply = EvalReply(pid, len(data.test), number(ev["accuracy"]), number(ev["loss"]))
    return Message(content=encode_eval_reply(reply), reply_to=msg)


@app.query()
def describe(msg: Message, context: Context) -> Message:
    """A site answers the server's site query with a summary of its data (or why it cannot
    join); a partitioned node says which partition it holds, and of how many."""
    ask = asked(msg.content)
    if ask is None:
        if DATA_PATH in context.node_config:
            raise ValueError("this SuperNode holds site data (data-path): run with "
                             "data.dataset='sites'")  # fmt: skip
        pid, n = node_partition(context.node_config)
        return Message(content=encode_partition(pid, n), reply_to=msg)
    return Message(content=site_answer(context.node_config, ask), reply_to=msg)


def site_answer(node_config: dict, query: SiteQuery):
    """This site's report, or its refusal with the reason (also logged here): its data is
    missing, unreadable or empty, or does not fit what the run config fixes."""
    name = str(node_config.get(SITE_NAME, ""))
    if DATA_PATH not in node_config:
        reason = "this SuperNode has no data-path: start it with --node-config data-path=<file>"
        log(WARNING, "fedzda: site refuses to join: %s", reason)
        return encode_site_report(name, {}, reason)
    try:
        site = _site(node_config)
        problem = misfit(site, parse_shape(query.input_shape), query.num_classes)
    except (DatasetError, ValueError) as e:
        site, problem = None, str(e)
    if problem:
        name = site.name if site else name or str(node_config[DATA_PATH])
        log(WARNING, "fedzda: site %s refuses to join: %s", name, problem)
        return encode_site_report(name, {}, problem)
    if site is None:  # reading failed with an exception that says nothing
        raise ValueError(f"cannot read the site data at {node_config[DATA_PATH]}")
    return encode_site_report(site.name, site_summary(site, query.stats, query.counts))
