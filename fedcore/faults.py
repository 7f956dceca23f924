"""Deliberate misbehaviour for fault-injection tests: corrupt one client's update.

Enabled only through the ``faults`` config section; a normal run never touches it.
"""

from __future__ import annotations

import torch

from fedcore.types import StateDict

BAD_UPDATE_KINDS = ("nan", "inf", "shape", "dtype", "missing_key", "extra_key", "num_examples")


def corrupt_update(state: StateDict, num_examples: int, kind: str) -> tuple[StateDict, int]:
    """Return a damaged copy of ``state`` and example count, as ``kind`` says."""
    state = dict(state)
    name = next(k for k, v in state.items() if v.is_floating_point())
    if kind == "nan":
        state[name] = torch.full_like(state[name], float("nan"))
    elif kind == "inf":
        state[name] = state[name].clone().fill_(float("inf"))
    elif kind == "shape":
        state[name] = torch.zeros(state[name].numel() + 1)
    elif kind == "dtype":
        state[name] = state[name].double()
    elif kind == "missing_key":
        del state[name]
    elif kind == "extra_key":
        state["injected.weight"] = torch.zeros(3)
    elif kind == "num_examples":
        num_examples = 10**12
    else:
        raise ValueError(f"unknown bad-update kind {kind!r}; choose from {BAD_UPDATE_KINDS}")
    return state, num_examples


def kind_for_round(kinds: tuple[str, ...] | list[str], server_round: int) -> str:
    """Cycle through ``kinds``, one per round."""
    return kinds[(server_round - 1) % len(kinds)]
