"""The algorithms by name. Adding one is one module plus one line in ``ALGORITHMS``.

An entry is the tuple of :class:`~fedcore.algorithms.base.Algorithm` classes it composes:
``zda`` is ``zdac`` and ``zdas`` together, not a third implementation.
"""

from __future__ import annotations

from typing import Any

from fedcore.algorithms.base import Algorithm, ClientHook, Composite, ServerSetup
from fedcore.algorithms.fedavg import FedAvg
from fedcore.algorithms.fedprox import FedProx
from fedcore.algorithms.scaffold import Scaffold
from fedcore.algorithms.zdac import Zdac
from fedcore.algorithms.zdas import Zdas

ALGORITHMS: dict[str, tuple[type[Algorithm], ...]] = {
    "fedavg": (FedAvg,),
    "fedprox": (FedProx,),
    "scaffold": (Scaffold,),
    "zdac": (Zdac,),
    "zdas": (Zdas,),
    "zda": (Zdac, Zdas),
}


def build_algorithm(setup: ServerSetup) -> Algorithm:
    """The server side of ``setup.cfg.algorithm`` (FedProx's term added where configured)."""
    parts = ALGORITHMS[setup.cfg.algorithm]
    prox = setup.cfg.fedprox
    if prox.compose_with_zda and prox.mu > 0 and any(p.composes_with_proximal for p in parts):
        parts = (*parts, FedProx)
    built = [cls(setup) for cls in parts]
    return built[0] if len(built) == 1 else Composite(built)


def client_hooks(config: dict[str, Any], arrays: dict) -> list[ClientHook]:
    """The client-side hooks a train message asks for, in registry order."""
    classes = dict.fromkeys(cls for parts in ALGORITHMS.values() for cls in parts)
    return [h for cls in classes if (h := cls.client_hook(config, arrays)) is not None]


__all__ = ["ALGORITHMS", "Algorithm", "ServerSetup", "build_algorithm", "client_hooks"]
