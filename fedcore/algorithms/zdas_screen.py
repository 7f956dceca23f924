"""ZDAS's screen against poisoned client models: the server tells a poisoned model by what
its inversions do, and leaves its samples (and its vote in the distillation ensemble) out
of the fine-tuning set.

Per client model, against the round's other models by a robust z-score (distance from the
median in units of 1.4826 x the median absolute deviation): the BatchNorm-statistics loss
its inversion ends at (a model whose weights no longer fit its running statistics, e.g.
sign-flipped or noised, cannot be inverted into samples that match them: high). Where the
round's sent model is known, a model whose update points away from the round's average
update (negative cosine) is out (levers.md, screen v3). With shared label counts, a model
that labels under ``CLAIMED_FLOOR`` of its peers' samples of the classes it claims to hold
as those classes is out: an absolute floor the round's attackers cannot move (screen v6).
Without counts, the share of a model's samples the aggregate labels as their class, by
z-score (low: a model trained on permuted labels makes samples others call something else).
With counts, the peers' agreement with a model's samples (screen v2) is not used: it made
most of the honest false alarms (levers.md, screen v6).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np
import torch
from torch import nn

from fedcore.types import StateDict

BN_FLOOR = 0.1  # the BN-loss scale is at least this share of the median (all alike: no flags)
AGREEMENT_FLOOR = 0.05  # the agreement scale is at least 5 points
CLAIMED_FLOOR = 0.1  # a model right on fewer of its peers' samples of its own classes is out


def robust_z(values: Mapping[int, float], floor: float) -> dict[int, float]:
    """Each value's distance from the median in units of max(1.4826 x MAD, ``floor``)."""
    v = torch.tensor(list(values.values()), dtype=torch.float64)
    med = v.median()
    scale = max(1.4826 * float((v - med).abs().median()), floor)
    return {k: (x - float(med)) / scale for k, x in values.items()}


def agreement(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    sources: torch.Tensor,
    device: torch.device | str,
) -> dict[int, float]:
    """Per source: the share of its samples ``model`` labels as their target class."""
    hits = votes_of([model], x, y, device)[0]
    return {int(s): float(hits[sources == s].float().mean()) for s in sources.unique()}


def votes_of(
    teachers: Sequence[nn.Module], x: torch.Tensor, y: torch.Tensor, device: torch.device | str
) -> torch.Tensor:
    """(models, samples): whether each teacher labels each sample as its target class."""
    with torch.no_grad():
        return torch.stack([_labels(t, x, device) == y for t in teachers])


def claimed_accuracy(
    votes: torch.Tensor, holds: torch.Tensor, y: torch.Tensor, sources: torch.Tensor
) -> dict[int, float]:
    """Per source: the share of the *other* sources' samples of the classes it claims to
    hold (its label counts) that its own model labels as their class; sources with no such
    sample are left out."""
    ids = [int(s) for s in sources.unique_consecutive()]
    out: dict[int, float] = {}
    for k, src in enumerate(ids):
        theirs = (sources != src) & holds[k, y]
        if theirs.any():
            out[src] = float(votes[k, theirs].float().mean())
    return out


def _labels(model: nn.Module, x: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """``model``'s label for every row of ``x`` (eval mode, 512 rows at a time)."""
    was = model.training
    model.eval()
    labels = torch.cat([model(xb.to(device)).argmax(1).cpu() for xb in x.split(512)])
    model.train(was)
    return labels


def update_cosines(
    sent: Mapping[str, torch.Tensor],
    averaged: Mapping[str, torch.Tensor],
    models: Mapping[int, Mapping[str, torch.Tensor]],
    keys: Sequence[str],
) -> dict[int, float]:
    """Per model: the cosine between its update (model - sent) and the round's average
    update (averaged - sent, after a robust rule where one runs), over the entries ``keys``
    (the trained parameters: BatchNorm's running statistics would outweigh them)."""

    def flat(state: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([(state[k].double() - sent[k].double()).flatten() for k in keys])

    mean = flat(averaged)
    return {p: float(torch.cosine_similarity(flat(m), mean, dim=0)) for p, m in models.items()}


def screen(
    bn_losses: Mapping[int, float],
    agreed: Mapping[int, float] | None,
    threshold: float,
    cosines: Mapping[int, float] | None = None,
    claimed: Mapping[int, float] | None = None,
) -> list[int]:
    """The sources whose BN loss is ``threshold`` deviations above the round's median, or
    (``agreed``) whose agreement is ``threshold`` below it, or (``cosines``) whose update
    points away from the average's, or (``claimed``) whose model labels under
    ``CLAIMED_FLOOR`` of its peers' samples of its own classes right (none with fewer than
    3 models)."""
    if threshold <= 0 or len(bn_losses) < 3:
        return []
    med_bn = float(torch.tensor(list(bn_losses.values())).median())
    z_bn = robust_z(bn_losses, BN_FLOOR * abs(med_bn))
    z_agree = robust_z(agreed, AGREEMENT_FLOOR) if agreed else {}
    out = {k for k in bn_losses if z_bn[k] > threshold or z_agree.get(k, 0.0) < -threshold}
    out |= {k for k, c in (cosines or {}).items() if c < 0}
    out |= {k for k, a in (claimed or {}).items() if a < CLAIMED_FLOOR}
    return sorted(out & set(bn_losses))


class Inversions(Protocol):
    """What the screen reads of a round's inversions (ZDAS's ``Inverted``)."""

    x: torch.Tensor
    y: torch.Tensor
    sources: torch.Tensor
    teachers: list[nn.Module]
    bn_losses: dict[int, float]


def screen_models(
    inv: Inversions,
    clients: Sequence[tuple[int, StateDict, np.ndarray | None]],
    student: nn.Module,
    averaged: StateDict,
    threshold: float,
    device: torch.device | str,
    sent: StateDict | None,
    param_names: Sequence[str],
) -> list[int]:
    """The client models (partitions) the screen leaves out of this round: BN loss, with
    label counts the claimed-class accuracy (without, the aggregate's agreement), and with
    ``sent`` the update's direction."""
    counts = [c[2] for c in clients]
    agreed, claimed = None, None
    if all(c is not None for c in counts):
        holds = torch.tensor(np.stack([c for c in counts if c is not None]) > 0)
        votes = votes_of(inv.teachers, inv.x, inv.y, device)
        claimed = claimed_accuracy(votes, holds, inv.y, inv.sources)
    else:
        agreed = agreement(student, inv.x, inv.y, inv.sources, device)
    models = {c[0]: c[1] for c in clients}
    cosines = update_cosines(sent, averaged, models, param_names) if sent else None
    return screen(inv.bn_losses, agreed, threshold, cosines, claimed)
