"""FedProx: FedAvg on the server; clients add ``mu/2 * ||w - w_global||^2`` to their loss."""

from __future__ import annotations

from strategies.fedavg import FairFedAvg


class FairFedProx(FairFedAvg):
    """FedAvg that sends ``proximal-mu`` with every training message (Flower's convention)."""

    def __init__(
        self,
        num_partitions: int,
        proximal_mu: float,
        min_train_nodes: int | None = None,
        max_examples: int = 10**9,
    ) -> None:
        if proximal_mu <= 0:
            raise ValueError(f"FedProx needs proximal_mu > 0, got {proximal_mu}")
        super().__init__(num_partitions, min_train_nodes, proximal_mu, max_examples)
