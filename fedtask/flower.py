"""The one ``fedtask`` module that knows Flower: records <-> torch, app-dir config loading.

Everything else in ``fedtask`` is plain PyTorch/NumPy; the Flower apps and strategies use
these helpers to stay thin.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from flwr.app import ArrayRecord, Context

from fedtask.config import ExperimentConfig, config_from_run_config

APP_DIR = Path(__file__).resolve().parent.parent
# MetricRecord keys every client reply carries (the client writes them, the server checks).
NUM_EXAMPLES = "num-examples"
PARTITION_ID = "partition-id"


def state_to_record(state: dict[str, torch.Tensor]) -> ArrayRecord:
    """A model state dict as an ArrayRecord (tensors detached, on CPU)."""
    return ArrayRecord({k: v.detach().cpu() for k, v in state.items()})


def record_to_state(record: ArrayRecord) -> dict[str, torch.Tensor]:
    """An ArrayRecord as a torch state dict."""
    return record.to_torch_state_dict()


@lru_cache(maxsize=8)
def _cached_config(items: tuple[tuple[str, Any], ...]) -> ExperimentConfig:
    return config_from_run_config(dict(items), APP_DIR)


def experiment_config(context: Context) -> ExperimentConfig:
    """The validated experiment for this run (YAML paths resolve against the app dir)."""
    return _cached_config(tuple(sorted(context.run_config.items())))


def partition_of(context: Context, cfg: ExperimentConfig) -> int:
    """This SuperNode's ``partition-id``, checked against the experiment's partition count."""
    nc = context.node_config
    if "partition-id" not in nc or "num-partitions" not in nc:
        raise ValueError(
            "this SuperNode has no partition: start it with "
            "--node-config 'partition-id=<i> num-partitions=<n>'"
        )
    pid, n = int(nc["partition-id"]), int(nc["num-partitions"])
    if n != cfg.partition.num_partitions:
        raise ValueError(
            f"SuperNode says num-partitions={n} but the experiment has "
            f"partition.num_partitions={cfg.partition.num_partitions}; in simulation run "
            f"`flwr run . --federation-config num-supernodes={cfg.partition.num_partitions}`"
            ", or set partition.num_partitions to match"
        )
    return pid
