"""A label-flip signal for ZDAS's screen, measured before it is built (levers.md, screen v8
candidate): does a client model's classifier-head update for each class it claims point
along the features of its peers' inversions of that class?

A client trained on flipped labels claims classes whose images it never held, so the head
rows of those classes should move along other classes' features. Per sampled model, per
claimed class c: the cosine between the change of the last linear layer's row c (model -
sent) and the mean penultimate feature (the round's averaged model) of the other models'
inversions of class c minus the mean over all of them; the model's score is the mean over
its classes. The run is the robustness table's zdas+scaffold robust composition with the
screen on (``zdas.screen=3``); the screen's own decisions are recorded beside each score.

    FEDZDA_REPRODUCIBLE=1 .venv/bin/python -m benchmarks.studies.head_alignment \
        --attack label_flip --seed 0 --rounds 8       # writes head_alignment-label_flip-s0.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

import fedcore.algorithms.zdas as zdas
from benchmarks.harness import core_run
from benchmarks.robustness import keys
from benchmarks.yardstick import RESULTS
from fedcore.types import StateDict

SCREEN = zdas.screen_models


def features(student: nn.Module, x: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """The input of ``student``'s last linear layer for every row of ``x`` (eval mode)."""
    last = [m for m in student.modules() if isinstance(m, nn.Linear)][-1]
    out: list[torch.Tensor] = []
    hook = last.register_forward_hook(lambda m, i, o: out.append(i[0].detach().cpu()))
    was = student.training
    student.eval()
    with torch.no_grad():
        for xb in x.split(512):
            student(xb.to(device))
    student.train(was)
    hook.remove()
    return torch.cat(out).double()


def scores(
    inv: zdas.Inverted,
    clients: Sequence[tuple[int, StateDict, np.ndarray | None]],
    student: nn.Module,
    sent: StateDict,
    device: torch.device | str,
) -> dict[int, float]:
    """Per client model with label counts: its mean head-row alignment over its classes."""
    name = [n for n, m in student.named_modules() if isinstance(m, nn.Linear)][-1]
    f = features(student, inv.x, device)
    out: dict[int, float] = {}
    for pid, state, counts in clients:
        if counts is None:
            continue
        dw = state[f"{name}.weight"].double() - sent[f"{name}.weight"].double()
        peers = inv.sources != pid
        centre = f[peers].mean(0)
        cos = []
        for c in map(int, np.flatnonzero(counts > 0)):
            theirs = peers & (inv.y == c)
            if theirs.any():
                direction = f[theirs].mean(0) - centre
                cos.append(float(torch.cosine_similarity(dw[c], direction, dim=0)))
        if cos:
            out[pid] = float(np.mean(cos))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--attack", default="label_flip")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=8)
    a = ap.parse_args()
    rounds: list[dict] = []

    def recorded(inv, clients, student, averaged, threshold, device, sent, names):
        left = SCREEN(inv, clients, student, averaged, threshold, device, sent, names)
        if sent is not None:
            rounds.append({"left_out": left, "scores": scores(inv, clients, student, sent, device)})
        return left

    zdas.screen_models = recorded  # the ZDAS step calls the screen through its module
    k = keys("zdas+scaffold", True, a.attack, seed=a.seed) + f" zdas.screen=3 rounds={a.rounds}"
    row = core_run(k, 100)
    out = RESULTS / f"head_alignment-{a.attack}-s{a.seed}.json"
    record = {
        "command": k,
        "attackers": row.get("attackers", []),
        "rounds": rounds,
        "platform": row["platform"],
        "accuracy_per_round": row["accuracy_per_round"],
    }
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
