"""The wire protocol: every message key, and typed values decoded once from records.

A train message carries the global model (``arrays``), a ConfigRecord ``config`` (the round,
the seed and whatever the algorithm asks of clients, e.g. ``proximal-mu`` or ``zdac.*``)
and any ArrayRecords the algorithm sends (``scaffold-c``). A train reply carries the model,
a MetricRecord ``metrics`` (``num-examples``, ``partition-id`` and diagnostics), the
ArrayRecords the algorithm expects back (``scaffold-dc``) and optionally ``preview``
(a few synthetic samples). Replies are checked while they are decoded; a bad reply becomes
a reason string, never a value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fedcore.types import StateDict

if TYPE_CHECKING:
    from flwr.app import ArrayRecord, RecordDict

# Records of a message's RecordDict
ARRAYS, CONFIG, METRICS, PREVIEW = "arrays", "config", "metrics", "preview"
# ConfigRecord keys (server -> client)
SERVER_ROUND, SEED = "server-round", "seed"
STATE_KEYS = "state-keys"  # under SecAgg+: the parameter names, in the order of the arrays
PROXIMAL_MU = "proximal-mu"  # FedProx's fedprox.mu (Flower's own name for it)
FEDLC_TAU = "fedlc.tau"  # FedLC's calibration strength
QFFL_ASK = "qfedavg.report-loss"  # q-FedAvg asks clients for their loss before training
ZDAC_PREFIX = "zdac."  # ZDAC's settings, flattened
SHARE_LABEL_COUNTS = "zdas.share_label_counts"  # ZDAS asks clients for their label counts
# ArrayRecords (server -> client, client -> server)
SCAFFOLD_C, SCAFFOLD_DC = "scaffold-c", "scaffold-dc"
ZDAC_BANK = "zdac-bank"  # synthetic samples the server inverted from the global model
ZDAS_PLAIN = "zdas-plain"  # zdas.guard: last round's average before the fine-tuning
# MetricRecord keys (client -> server); the last two also in a message's ConfigRecord when
# the server assigns each node its partition (server.partition_map)
NUM_EXAMPLES, PARTITION_ID, NUM_PARTITIONS = "num-examples", "partition-id", "num-partitions"
LABEL_COUNTS = "label-counts"
QFFL_LOSS = "qffl-loss"  # q-FedAvg: the received model's loss on the client's own data
QFFL_STEP = "qffl-step"  # q-FedAvg: the client's K * lr / (1 - momentum)
GUARD_GLOBAL_LOSS = "zdas-guard-global-loss"  # zdas.guard: the received model's own-data loss
GUARD_PLAIN_LOSS = "zdas-guard-plain-loss"  # ... and that of ZDAS_PLAIN
ACCURACY, LOSS = "accuracy", "loss"
# Sites (data.dataset = "sites"): a SuperNode's node config names its own data ...
DATA_PATH, SITE_NAME = "data-path", "site-name"  # an .npz file or image folder; its name
TEST_SHARE, TEST_SEED = "test-share", "test-seed"  # held-out test share without x_test
# ... the server's query asks for a summary (ConfigRecord keys), the site answers in a
# ConfigRecord SITE (its name, or REFUSAL: why it cannot join) and the MetricRecord METRICS
SITE_QUERY, ASK_STATS, ASK_COUNTS = "site-query", "ask-pixel-stats", "ask-label-counts"
SITE, REFUSAL = "site", "refusal"
# ... and every train/evaluate message carries the federation's normalisation and classes
DATA_MEAN, DATA_STD, NUM_CLASSES = "data-mean", "data-std", "num-classes"
INPUT_SHAPE = "input-shape"  # (site query) the shape the run config fixes


def _flwr():
    """Flower's record types, imported on first use: the keys and typed values of this module
    serve Flower-free code too (the core round loop, the GPU check)."""
    from flwr.app import ArrayRecord, MetricRecord, RecordDict

    return ArrayRecord, MetricRecord, RecordDict


def number(value: Any) -> float:
    """A scalar record value as a float (records type their values as unions)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def state_to_record(state: StateDict) -> ArrayRecord:
    """A model state dict as an ArrayRecord (tensors detached, on CPU)."""
    return _flwr()[0]({k: v.detach().cpu() for k, v in state.items()})


def record_to_state(record: ArrayRecord) -> StateDict:
    """An ArrayRecord as a torch state dict."""
    return record.to_torch_state_dict()


# ------------------------------------------------------------------ server -> client
@dataclass
class TrainRequest:
    """A decoded train message."""

    state: StateDict
    server_round: int
    seed: int
    config: dict[str, Any]
    arrays: dict[str, StateDict]


def decode_train_request(content: RecordDict) -> TrainRequest:
    """The global model, round, seed, algorithm config and extra arrays of a train message."""
    config = dict(content.config_records[CONFIG])
    arrays = {k: record_to_state(v) for k, v in content.array_records.items() if k != ARRAYS}
    return TrainRequest(
        record_to_state(content.array_records[ARRAYS]),
        int(number(config[SERVER_ROUND])),
        int(number(config.get(SEED, 0))),
        config,
        arrays,
    )


def add_arrays(content: RecordDict, extra: dict[str, StateDict]) -> None:
    """Attach the algorithm's extra ArrayRecords to an outgoing message's content."""
    for name, state in extra.items():
        content[name] = state_to_record(state)


# ------------------------------------------------------------------ client -> server
@dataclass
class TrainReply:
    """A checked train reply: the client's model, weight, identity and what it adds."""

    partition_id: int
    num_examples: int
    state: StateDict
    metrics: dict[str, Any]
    arrays: dict[str, StateDict] = field(default_factory=dict)
    preview: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def label_counts(self) -> np.ndarray | None:
        counts = self.metrics.get(LABEL_COUNTS)
        return None if counts is None else np.asarray(counts)


def encode_train_reply(
    state: StateDict,
    num_examples: int,
    partition_id: int,
    metrics: dict[str, Any],
    arrays: dict[str, StateDict],
    preview: tuple[torch.Tensor, torch.Tensor] | None,
) -> RecordDict:
    """The RecordDict of a train reply."""
    array_record, metric_record, record_dict = _flwr()
    head = {NUM_EXAMPLES: num_examples, PARTITION_ID: partition_id}
    content = record_dict({ARRAYS: state_to_record(state), METRICS: metric_record(head | metrics)})
    add_arrays(content, arrays)
    if preview is not None:
        content[PREVIEW] = array_record({"x": preview[0].cpu(), "y": preview[1].cpu()})
    return content


def decode_train_reply(
    content: RecordDict,
    reference: StateDict,
    expected: dict[str, StateDict],
    max_examples: int,
) -> TrainReply | str:
    """The reply as a :class:`TrainReply`, or the reason it is refused."""
    reason = check_metrics(content, (NUM_EXAMPLES, PARTITION_ID), max_examples)
    if reason:
        return reason
    states = _decode_checked(content, {ARRAYS: reference, **expected})
    if isinstance(states, str):
        return states
    preview = None
    if PREVIEW in content.array_records:
        p = _decode(content.array_records[PREVIEW])
        if isinstance(p, str) or set(p) != {"x", "y"} or len(p["x"]) != len(p["y"]):
            return "preview: expected arrays x and y of one length"
        preview = (p["x"], p["y"].long())
    m = dict(content.metric_records[METRICS])
    return TrainReply(
        int(number(m.pop(PARTITION_ID))),
        int(number(m.pop(NUM_EXAMPLES))),
        states.pop(ARRAYS),
        m,
        states,
        preview,
    )


@dataclass
class EvalReply:
    """A checked evaluate reply: one client's accuracy and loss on its own test set."""

    partition_id: int
    num_examples: int
    accuracy: float
    loss: float


def encode_eval_reply(reply: EvalReply) -> RecordDict:
    """The RecordDict of an evaluate reply."""
    m = {
        NUM_EXAMPLES: reply.num_examples,
        PARTITION_ID: reply.partition_id,
        ACCURACY: reply.accuracy,
        LOSS: reply.loss,
    }
    _, metric_record, record_dict = _flwr()
    return record_dict({METRICS: metric_record(m)})


def decode_eval_reply(content: RecordDict, max_examples: int) -> EvalReply | str:
    """The reply as an :class:`EvalReply`, or the reason it is refused."""
    reason = check_metrics(content, (NUM_EXAMPLES, PARTITION_ID, ACCURACY, LOSS), max_examples)
    if reason:
        return reason
    m = content.metric_records[METRICS]
    pid, n = int(number(m[PARTITION_ID])), int(number(m[NUM_EXAMPLES]))
    return EvalReply(pid, n, number(m[ACCURACY]), number(m[LOSS]))


# ------------------------------------------------------------------ who is who
def node_partition(node_config: dict[str, Any]) -> tuple[int, int]:
    """A SuperNode's ``(partition-id, num-partitions)`` from its node config."""
    if PARTITION_ID not in node_config or NUM_PARTITIONS not in node_config:
        raise ValueError(
            "this SuperNode has no partition: start it with "
            "--node-config 'partition-id=<i> num-partitions=<n>'"
        )
    return int(node_config[PARTITION_ID]), int(node_config[NUM_PARTITIONS])


def assigned_partition(content: RecordDict) -> tuple[int, int] | None:
    """``(partition-id, num-partitions)`` a message assigns to its node (the server's
    ``server.partition_map = assign``), else None: the node trains its own partition.
    Raises ValueError for an assignment outside ``0 .. num-partitions - 1``."""
    if CONFIG not in content.config_records:
        return None
    config = content.config_records[CONFIG]
    if PARTITION_ID not in config:
        return None
    pid, n = int(number(config[PARTITION_ID])), int(number(config[NUM_PARTITIONS]))
    if not 0 <= pid < n:
        raise ValueError(f"assigned partition-id {pid} is not in 0..{n - 1}")
    return pid, n


def encode_partition(partition_id: int, num_partitions: int) -> RecordDict:
    """The reply to a query: which partition this node holds, out of how many."""
    m = {PARTITION_ID: partition_id, NUM_PARTITIONS: num_partitions}
    _, metric_record, record_dict = _flwr()
    return record_dict({METRICS: metric_record(m)})


def decode_partition(content: RecordDict) -> tuple[int, int]:
    """``(partition-id, num-partitions)`` from a query reply."""
    m = content.metric_records[METRICS]
    return int(number(m[PARTITION_ID])), int(number(m[NUM_PARTITIONS]))


# ------------------------------------------------------------------ checks
def check_metrics(content: RecordDict, required: tuple[str, ...], max_examples: int) -> str | None:
    """Problems with a reply's MetricRecord, or None when it is usable."""
    if METRICS not in content.metric_records:
        return f"no MetricRecord {METRICS!r}"
    m = content.metric_records[METRICS]
    for key in required:
        if key not in m:
            return f"metric {key!r} missing"
    n = m[NUM_EXAMPLES]
    if isinstance(n, list) or not math.isfinite(float(n)) or not 0 < float(n) <= max_examples:
        return f"absurd {NUM_EXAMPLES}={n!r} (expected 1..{max_examples})"
    if PARTITION_ID in m and not isinstance(m[PARTITION_ID], int):
        return f"{PARTITION_ID}={m[PARTITION_ID]!r} is not an integer"
    return None


def check_arrays(
    content: RecordDict, reference: StateDict, extra: dict[str, StateDict] | None = None
) -> str | None:
    """Problems with a reply's model and extra ArrayRecords, or None when they are usable."""
    states = _decode_checked(content, {ARRAYS: reference, **(extra or {})})
    return states if isinstance(states, str) else None


def _decode_checked(content: RecordDict, expected: dict[str, StateDict]) -> dict | str:
    """Every expected ArrayRecord decoded and checked against its reference, or a reason."""
    got = set(content.array_records.keys()) - {PREVIEW}
    if got != set(expected):
        return f"expected ArrayRecords {sorted(expected)}, got {sorted(got)}"
    states: dict[str, StateDict] = {}
    for name, ref in expected.items():
        state = _decode(content.array_records[name])
        problem = state if isinstance(state, str) else _check_state(state, ref)
        if problem:
            return problem if name == ARRAYS else f"{name}: {problem}"
        states[name] = state  # type: ignore[assignment]
    return states


def _decode(record: ArrayRecord) -> StateDict | str:
    try:
        return record.to_torch_state_dict()
    except Exception as e:  # a malformed array cannot be decoded
        return f"undecodable arrays: {e}"


def _check_state(state: StateDict, reference: StateDict) -> str | None:
    missing, extra = reference.keys() - state.keys(), state.keys() - reference.keys()
    if missing or extra:
        return f"keys differ: missing {sorted(missing)[:3]}, extra {sorted(extra)[:3]}"
    for k, ref in reference.items():
        t = state[k]
        if t.shape != ref.shape:
            return f"{k}: shape {tuple(t.shape)} != {tuple(ref.shape)}"
        if t.dtype != ref.dtype:
            return f"{k}: dtype {t.dtype} != {ref.dtype}"
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return f"{k}: contains NaN or Inf"
    return None


# ------------------------------------------------------------------ sites
@dataclass(frozen=True)
class SiteQuery:
    """The server's question to a site before round 1: what to include in its summary, and
    what the run config fixes of the data (so that a site that does not fit says so)."""

    stats: bool = False  # per-channel pixel sums (no data.mean/std in the run config)
    counts: bool = False  # label counts (zdas.share_label_counts)
    input_shape: str = ""  # "C,H,W" the run config fixes, or ""
    num_classes: int = 0  # the classes the run config fixes, or 0


def site_query(query: SiteQuery) -> RecordDict:
    """A site query as a message's content."""
    from flwr.app import ConfigRecord

    ask = ConfigRecord(
        {SITE_QUERY: True, ASK_STATS: query.stats, ASK_COUNTS: query.counts,
         INPUT_SHAPE: query.input_shape, NUM_CLASSES: query.num_classes}
    )  # fmt: skip
    return _flwr()[2]({CONFIG: ask})


def asked(content: RecordDict) -> SiteQuery | None:
    """The site query a message carries, or None for a partition query."""
    config = content.config_records.get(CONFIG)
    if config is None or not config.get(SITE_QUERY):
        return None
    shape, classes = str(config.get(INPUT_SHAPE, "")), int(number(config.get(NUM_CLASSES, 0)))
    return SiteQuery(bool(config.get(ASK_STATS)), bool(config.get(ASK_COUNTS)), shape, classes)


def encode_site_report(name: str, summary: dict[str, Any], refusal: str = "") -> RecordDict:
    """A site's answer: its name and summary, or the reason it cannot join."""
    from flwr.app import ConfigRecord

    _, metric_record, record_dict = _flwr()
    site = ConfigRecord({SITE_NAME: name, REFUSAL: refusal})
    return record_dict({SITE: site, METRICS: metric_record(summary)})


def decode_site_report(content: RecordDict) -> tuple[str, dict[str, Any], str]:
    """``(name, summary, refusal)`` of a site's answer; a malformed answer is a refusal."""
    site = content.config_records.get(SITE)
    if site is None or not isinstance(site.get(SITE_NAME), str):
        return "", {}, "its answer names no site: is it started with --node-config data-path=...?"
    metrics = content.metric_records.get(METRICS)
    summary = dict(metrics) if metrics is not None else {}
    return str(site[SITE_NAME]), summary, str(site.get(REFUSAL, ""))


def site_normalisation(content: RecordDict) -> tuple[tuple[float, ...], tuple[float, ...], int]:
    """The federation's per-channel mean and std and its number of classes, as a train or
    evaluate message to a site carries them."""
    config = content.config_records[CONFIG]
    if DATA_MEAN not in config:
        raise ValueError("the message carries no data-mean: the run's data.dataset is not 'sites'")
    mean = tuple(float(v) for v in str(config[DATA_MEAN]).split(","))
    std = tuple(float(v) for v in str(config[DATA_STD]).split(","))
    return mean, std, int(number(config[NUM_CLASSES]))


def site_message_config(mean: tuple[float, ...], std: tuple[float, ...], classes: int) -> dict:
    """The keys every train and evaluate message to a site carries (exact decimal floats)."""
    return {
        DATA_MEAN: ",".join(repr(float(v)) for v in mean),
        DATA_STD: ",".join(repr(float(v)) for v in std),
        NUM_CLASSES: classes,
    }
