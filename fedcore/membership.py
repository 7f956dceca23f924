"""Membership inference against synthetic samples: do client k's synthetic samples tell k's
training images apart from unseen images of the same classes?

Each candidate image is scored by its distance to the nearest synthetic sample of client k's
model (closer: "member"). Members are k's training images; non-members are test images
drawn with k's class mix (no client ever trained on them). The AUC of that score separating
members from non-members is 0.5 when the synthetic set carries nothing specific to k's
images, 1.0 when every member sits closer than every non-member. Distances are taken in
pixel space and in a fixed feature space (a model trained centrally, not the model the
samples came from).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

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


def matched_nonmembers(
    member_y: torch.Tensor, pool_y: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Indices into ``pool_y`` with the members' class counts (each class capped at what
    the pool holds), drawn without replacement."""
    picks = []
    for c in member_y.unique().tolist():
        have = torch.nonzero(pool_y == c).flatten()
        need = min(int((member_y == c).sum()), len(have))
        picks.append(have[torch.randperm(len(have), generator=generator)[:need]])
    return torch.cat(picks) if picks else torch.zeros(0, dtype=torch.long)


def nearest_distance(candidates: torch.Tensor, synthetic: torch.Tensor) -> torch.Tensor:
    """Each candidate's Euclidean distance to its nearest synthetic sample (flattened)."""
    q, s = candidates.flatten(1).double(), synthetic.flatten(1).double()
    d2 = q.pow(2).sum(1, keepdim=True) + s.pow(2).sum(1) - 2 * q @ s.T
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
    return auc(
        -nearest_distance(members, synthetic), -nearest_distance(nonmembers, synthetic)
    )


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
    mx, my = member
    keep = torch.randperm(len(my), generator=gen)[:max_members]
    mx, my = mx[keep], my[keep]
    idx = matched_nonmembers(my, pool[1], gen)
    nx = pool[0][idx]
    return {
        "auc_pixel": membership_auc(synthetic, mx, nx),
        "auc_feature": membership_auc(synthetic, mx, nx, embed),
        "members": float(len(my)),
        "nonmembers": float(len(idx)),
        "synthetic": float(len(synthetic)),
    }


def summarise(rows: list[dict[str, float]]) -> dict[str, float]:
    """Mean and maximum of each AUC over clients."""
    out: dict[str, float] = {"clients": float(len(rows))}
    for key in ("auc_pixel", "auc_feature"):
        vals = np.array([r[key] for r in rows], dtype=float)
        out[f"{key}_mean"], out[f"{key}_max"] = float(np.nanmean(vals)), float(np.nanmax(vals))
    return out
