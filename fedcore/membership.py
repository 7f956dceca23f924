"""Membership inference against synthetic samples: do client k's synthetic samples tell k's
training images apart from unseen images of the same classes?

Each candidate image is scored by its distance to the nearest synthetic sample of client k's
model (closer: "member"). Members are k's training images; non-members are unseen images
(no client trained on them) with exactly the members' class mix: per class, as many of each
as both sets can give. The AUC of that score separating members from non-members is 0.5
when the synthetic set carries nothing specific to k's images, 1.0 when every member sits
closer than every non-member. Distances are taken in pixel space and in a fixed feature
space: a model trained on images that are neither members nor non-members (not the model
the samples came from, and not one that saw the members).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from fedcore.leakage import squared_distances

Embed = Callable[[torch.Tensor], torch.Tensor]


def auc(member_scores: torch.Tensor, nonmember_scores: torch.Tensor) -> float:
    """P(score of a member > score of a non-member), ties counting half (Mann-Whitney U)."""
    m, n = member_scores.double().flatten(), nonmember_scores.double().flatten()
    if len(m) == 0 or len(n) == 0:
        return float("nan")
    both = torch.cat([m, n])
    order = torch.argsort(both)
    ranks = torch.empty_like(both)
    ranks[order] = torch.arange(1, len(both) + 1, dtype=torch.float64)
    for v in torch.unique(both):  # average ranks over ties
        tie = both == v
        if int(tie.sum()) > 1:
            ranks[tie] = ranks[tie].mean()
    u = float(ranks[: len(m)].sum()) - len(m) * (len(m) + 1) / 2
    return u / (len(m) * len(n))


def matched_sets(
    member_y: torch.Tensor, pool_y: torch.Tensor, generator: torch.Generator, limit: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of members and of pool images with one class mix: per class the members'
    share of ``limit`` members, capped by what the pool holds, drawn without replacement."""
    scale = min(1.0, limit / max(len(member_y), 1))
    mine, theirs = [], []
    for c in member_y.unique().tolist():
        have_m = torch.nonzero(member_y == c).flatten()
        have_p = torch.nonzero(pool_y == c).flatten()
        n = min(round(len(have_m) * scale), len(have_p))
        mine.append(have_m[torch.randperm(len(have_m), generator=generator)[:n]])
        theirs.append(have_p[torch.randperm(len(have_p), generator=generator)[:n]])
    empty = torch.zeros(0, dtype=torch.long)
    return (torch.cat(mine), torch.cat(theirs)) if mine else (empty, empty)


def nearest_distance(candidates: torch.Tensor, synthetic: torch.Tensor) -> torch.Tensor:
    """Each candidate's Euclidean distance to its nearest synthetic sample (flattened)."""
    d2 = squared_distances(candidates.double(), synthetic.double())
    return d2.clamp_min(0).min(1).values.sqrt()


def membership_auc(
    synthetic: torch.Tensor,
    members: torch.Tensor,
    nonmembers: torch.Tensor,
    embed: Embed | None = None,
) -> float:
    """The AUC of "closer to a synthetic sample" for members against non-members, in pixel
    space, or in ``embed``'s feature space."""
    if embed is not None:
        synthetic, members, nonmembers = embed(synthetic), embed(members), embed(nonmembers)
    return auc(-nearest_distance(members, synthetic), -nearest_distance(nonmembers, synthetic))


def client_membership(
    synthetic: torch.Tensor,
    member: tuple[torch.Tensor, torch.Tensor],
    pool: tuple[torch.Tensor, torch.Tensor],
    embed: Embed,
    *,
    seed: int = 0,
    max_members: int = 1000,
) -> dict[str, float]:
    """One client's membership AUCs (pixel and feature space) for its synthetic samples."""
    gen = torch.Generator().manual_seed(seed)
    mi, ni = matched_sets(member[1], pool[1], gen, max_members)
    mx, nx = member[0][mi], pool[0][ni]
    return {
        "auc_pixel": membership_auc(synthetic, mx, nx),
        "auc_feature": membership_auc(synthetic, mx, nx, embed),
        "members": float(len(mi)),
        "nonmembers": float(len(ni)),
        "synthetic": float(len(synthetic)),
    }


def summarise(rows: list[dict[str, float]]) -> dict[str, float]:
    """Mean and maximum of each AUC over clients."""
    out: dict[str, float] = {"clients": float(len(rows))}
    for key in ("auc_pixel", "auc_feature"):
        vals = np.array([r[key] for r in rows], dtype=float)
        out[f"{key}_mean"], out[f"{key}_max"] = float(np.nanmean(vals)), float(np.nanmax(vals))
    return out
