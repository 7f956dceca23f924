"""FedProx: FedAvg on the server; clients add ``mu/2 * ||w - w_global||^2`` to their loss."""

from __future__ import annotations

from collections.abc import Iterable

from flwr.app import ArrayRecord, ConfigRecord, Message
from flwr.serverapp import Grid

from strategies.fedavg import FairFedAvg


class FairFedProx(FairFedAvg):
    """Sends ``proximal-mu`` with every training message (Flower's FedProx convention)."""

    def __init__(self, num_partitions: int, proximal_mu: float,
                 min_train_nodes: int | None = None) -> None:  # fmt: skip
        super().__init__(num_partitions, min_train_nodes)
        self.proximal_mu = proximal_mu

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Inject the proximal weight, then configure as FedAvg."""
        config["proximal-mu"] = self.proximal_mu
        return super().configure_train(server_round, arrays, config, grid)
