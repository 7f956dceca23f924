"""Flower strategies: thin adapters over the ``fedtask`` and ``inversion`` cores."""

from strategies.factory import build_strategy
from strategies.fedavg import FairFedAvg
from strategies.fedprox import FairFedProx
from strategies.scaffold import ScaffoldFedAvg
from strategies.zdas import ZdasFedAvg

__all__ = ["FairFedAvg", "FairFedProx", "ScaffoldFedAvg", "ZdasFedAvg", "build_strategy"]
