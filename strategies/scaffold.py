"""SCAFFOLD strategy: FedAvg of the models plus the server control variate ``c``.

``c`` travels to clients as the ArrayRecord ``scaffold-c`` next to the model; clients answer
with their model and ``scaffold-dc`` (their control-variate change). The update rules are
:mod:`fedtask.scaffold`; clients keep ``c_i`` in Flower's ``Context.state``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from fedtask.flower import record_to_state, state_to_record
from fedtask.scaffold import server_control_update, zeros_like_params
from strategies.fedavg import FairFedAvg

C_KEY, DC_KEY = "scaffold-c", "scaffold-dc"


class ScaffoldFedAvg(FairFedAvg):
    """FedAvg with SCAFFOLD's server and client control variates."""

    def __init__(self, num_partitions: int, param_names: list[str], **kwargs) -> None:
        super().__init__(num_partitions, **kwargs)
        self.param_names = param_names
        self.c: dict[str, torch.Tensor] = {}
        self.extra_arrays = {DC_KEY: lambda: self.c}

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Send ``c`` with the model (zeros before the first round)."""
        if not self.c:
            state = record_to_state(arrays)
            self.c = zeros_like_params({n: state[n] for n in self.param_names})
        messages = list(super().configure_train(server_round, arrays, config, grid))
        for msg in messages:
            msg.content[C_KEY] = state_to_record(self.c)
        return messages

    def refine(self, server_round: int, averaged: dict[str, torch.Tensor],
               contents: list[RecordDict]) -> dict[str, torch.Tensor]:  # fmt: skip
        """Update ``c`` from the clients' deltas; the averaged model is FedAvg's."""
        deltas = [record_to_state(c.array_records[DC_KEY]) for c in contents]
        self.c = server_control_update(self.c, deltas, self.num_partitions)
        return averaged

    def state_dict(self) -> dict:
        return {"c": self.c}

    def load_state_dict(self, state: dict) -> None:
        self.c = state["c"]
