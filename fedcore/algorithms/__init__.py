"""The algorithms by name. Adding one is one module plus one line in ``ALGORITHMS``.

An entry is the tuple of :class:`~fedcore.algorithms.base.Algorithm` classes it composes
(``zda`` is ``zdac`` and ``zdas`` together, not a third implementation). Names compose
with ``+``: ``zda+fedprox`` runs ZDA with FedProx's proximal term, ``zda+fedlc`` with
FedLC's calibrated loss. Each algorithm's settings are its own config section
(:data:`SECTIONS`); the checks that need the registry live here.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from fedcore.algorithms.base import Algorithm, ClientHook, Composite, RunContext, ServerSetup
from fedcore.algorithms.fedavg import FedAvg
from fedcore.algorithms.fedlc import FedLC
from fedcore.algorithms.fedprox import FedProx
from fedcore.algorithms.krum import Krum
from fedcore.algorithms.median import Median
from fedcore.algorithms.qfedavg import QFedAvg
from fedcore.algorithms.scaffold import Scaffold
from fedcore.algorithms.trimmedmean import TrimmedMean
from fedcore.algorithms.zdac import Zdac
from fedcore.algorithms.zdas import Zdas

ALGORITHMS: dict[str, tuple[type[Algorithm], ...]] = {
    "fedavg": (FedAvg,),
    "fedprox": (FedProx,),
    "scaffold": (Scaffold,),
    "fedlc": (FedLC,),
    "qfedavg": (QFedAvg,),
    "zdac": (Zdac,),
    "zdas": (Zdas,),
    "zda": (Zdac, Zdas),
    "median": (Median,),
    "trimmedmean": (TrimmedMean,),
    "krum": (Krum,),
}

_CLASSES: tuple[type[Algorithm], ...] = tuple(
    dict.fromkeys(cls for parts in ALGORITHMS.values() for cls in parts)
)
# config section -> its dataclass, for every algorithm that has settings
SECTIONS: dict[str, type] = {c.section: c.Config for c in _CLASSES if c.Config is not None}


class UnknownAlgorithm(ValueError):
    """A name (or a part of a ``+`` composition) that is not in :data:`ALGORITHMS`."""


def resolve(name: str) -> tuple[type[Algorithm], ...]:
    """The classes ``name`` composes, each once (``zda+zdas`` is ``zda``), in the written
    order except that a part replacing the average runs first (the others refine it)."""
    parts = [p.strip() for p in name.split("+")]
    unknown = [p for p in parts if p not in ALGORITHMS]
    if unknown:
        where = f" in {name!r}" if len(parts) > 1 else ""
        raise UnknownAlgorithm(
            f"algorithm: {', '.join(map(repr, unknown))}{where} is not one of "
            f"{tuple(ALGORITHMS)}; compose them with '+', e.g. 'zda+fedprox'"
        )
    classes = tuple(dict.fromkeys(cls for p in parts for cls in ALGORITHMS[p]))
    return tuple(sorted(classes, key=lambda c: not c.replaces_average))  # stable


def algorithm_problems(name: str, sections: dict[str, Any], run: RunContext) -> list[str]:
    """Every problem of ``name`` in this run: unknown parts, secure aggregation with an
    algorithm that needs each client's model, and each part's own run checks."""
    try:
        classes = resolve(name)
    except UnknownAlgorithm as e:
        return [str(e)]
    out = []
    replacing = [c.name for c in classes if c.replaces_average]
    if len(replacing) > 1:
        out.append(f"algorithm: {replacing} each replace the average; compose at most one")
    if run.secure_aggregation and not all(c.averages_only for c in classes):
        out.append(
            f"server.secure_aggregation: {name!r} needs each client's model (or control "
            "variate) on the server, which SecAgg+ hides (robust aggregation included); use "
            "an algorithm made of fedavg, fedprox, fedlc or zdac, or set it false"
        )
    for c in classes:
        if c.Config is not None:
            out += c.run_problems(sections[c.section], run)
    return out


def model_problems(name: str, sections: dict[str, Any], model: nn.Module) -> list[str]:
    """Every problem of running ``name`` on ``model`` (e.g. inversion without BatchNorm)."""
    classes = resolve(name)
    return [m for c in classes if c.Config is not None for m in c.model_problems(
        sections[c.section], model)]  # fmt: skip


def build_algorithm(
    name: str, sections: dict[str, Any], run: RunContext, **setup: Any
) -> Algorithm:
    """The server side of ``name``; each part gets its own section and the run context
    (``setup``: the other :class:`ServerSetup` fields)."""
    built = [
        cls(ServerSetup(sections.get(cls.section) if cls.Config else None, run, **setup))
        for cls in resolve(name)
    ]
    return built[0] if len(built) == 1 else Composite(built)


def client_hooks(config: dict[str, Any], arrays: dict) -> list[ClientHook]:
    """The client-side hooks a train message asks for, in registry order."""
    return [h for cls in _CLASSES if (h := cls.client_hook(config, arrays)) is not None]


__all__ = [
    "ALGORITHMS",
    "SECTIONS",
    "Algorithm",
    "RunContext",
    "ServerSetup",
    "algorithm_problems",
    "build_algorithm",
    "client_hooks",
    "resolve",
]
