"""ZDAS strategy: FedAvg, then invert every client model and fine-tune the average on the
pooled synthetic samples (the core is :func:`inversion.zdas.zdas_finetune`)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from flwr.app import RecordDict
from torch import nn

from fedtask.flower import record_to_state
from inversion.pool import SyntheticPool
from inversion.zdas import ZdasConfig, zdas_finetune
from strategies.fedavg import PARTITION_ID, FairFedAvg


class ZdasFedAvg(FairFedAvg):
    """FedAvg whose averaged model is fine-tuned on samples inverted from the client models.

    Keeps one synthetic pool per client (by ``partition-id``) so each round refines the last
    round's samples instead of starting from noise. ``last_samples`` holds the pooled
    samples of the latest round (for image grids).
    """

    def __init__(
        self,
        num_partitions: int,
        cfg: ZdasConfig,
        make_model: Callable[[], nn.Module],
        data_info: dict,
        min_train_nodes: int | None = None,
        proximal_mu: float = 0.0,
        seed: int = 0,
        max_examples: int = 10**9,
    ) -> None:
        super().__init__(num_partitions, min_train_nodes, proximal_mu, max_examples)
        self.cfg, self.make_model, self.data_info, self.seed = cfg, make_model, data_info, seed
        self.pools: dict[int, SyntheticPool] = {}
        self.last_samples: tuple[torch.Tensor, torch.Tensor] | None = None

    def state_dict(self) -> dict:
        """The per-client synthetic pools."""
        return {"pools": {cid: pool.state() for cid, pool in self.pools.items()}}

    def load_state_dict(self, state: dict) -> None:
        """Restore the pools from :meth:`state_dict`."""
        self.pools = {int(c): SyntheticPool.from_state(s) for c, s in state["pools"].items()}

    def refine(
        self, server_round: int, averaged: dict[str, torch.Tensor], contents: list[RecordDict]
    ) -> dict[str, torch.Tensor]:
        """Invert each client model, pool, fine-tune the average."""
        if not self.cfg.active(server_round):
            return averaged
        metrics = [c.metric_records["metrics"] for c in contents]
        counts = [np.asarray(m["label-counts"]) if "label-counts" in m else None for m in metrics]
        out = zdas_finetune(
            self.make_model,
            averaged,
            [record_to_state(c.array_records["arrays"]) for c in contents],
            [int(m[PARTITION_ID]) for m in metrics],
            counts,
            self.cfg,
            self.pools,
            server_round,
            device=self.device,
            seed=self.seed * 100_003 + server_round,
            **self.data_info,
        )
        self.round_info.update(out.metrics)
        self.last_samples = (out.x, out.y)
        return out.state
