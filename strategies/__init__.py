"""Flower strategies: thin adapters over the ``fedtask`` core."""

from strategies.factory import build_strategy
from strategies.fedavg import FairFedAvg
from strategies.fedprox import FairFedProx

__all__ = ["FairFedAvg", "FairFedProx", "build_strategy"]
