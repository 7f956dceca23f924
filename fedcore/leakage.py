"""How close synthetic samples come to a client's real images (the privacy question of ZDAS).

For each synthetic sample inverted from client k's model, its nearest real training image of
client k, in pixel space (SSIM, and PSNR of that nearest image) and in the model's
penultimate features (cosine similarity). The baseline is the same measure for real images
of the same classes held by *other* clients: a real image of the class that client k never
saw. Synthetic samples that sit much closer to k's images than that baseline would be
memorised data; samples at or below it reveal no more than the class itself does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

WINDOW = 7  # SSIM's local window (uniform), as in scikit-image's default
C1, C2 = 0.01**2, 0.03**2  # SSIM constants for images in [0, 1]


def ssim_matrix(a: torch.Tensor, b: torch.Tensor, pairs: int = 40_000) -> torch.Tensor:
    """``(len(a), len(b))`` mean SSIM between every pair of images in [0, 1] (N, C, H, W),
    computed ``pairs`` pairs at a time."""
    chunk = max(1, pairs // max(len(b), 1))

    def stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu = F.avg_pool2d(x, WINDOW, 1)
        return mu, F.avg_pool2d(x * x, WINDOW, 1) - mu * mu

    mb, vb = stats(b)
    out = []
    for i in range(0, len(a), chunk):
        x = a[i : i + chunk]
        ma, va = stats(x)
        # E[xy] - mu_x mu_y for every pair, through the window means of the products
        cov = (
            F.avg_pool2d((x[:, None] * b[None]).flatten(0, 1), WINDOW, 1).view(
                len(x), len(b), *mb.shape[1:]
            )
            - ma[:, None] * mb[None]
        )
        num = (2 * ma[:, None] * mb[None] + C1) * (2 * cov + C2)
        den = (ma[:, None] ** 2 + mb[None] ** 2 + C1) * (va[:, None] + vb[None] + C2)
        out.append((num / den).flatten(2).mean(2))
    return torch.cat(out)


def squared_distances(q: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """``(len(q), len(r))`` squared Euclidean distances between the flattened rows, in
    their dtype, by one matrix product."""
    q, r = q.flatten(1), r.flatten(1)
    return q.pow(2).sum(1, keepdim=True) + r.pow(2).sum(1) - 2 * q @ r.T


def ssim_nearest(
    query: torch.Tensor, reference: torch.Tensor, candidates: int = 32
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each query image, the highest SSIM over ``reference`` and its index, searched
    among the ``candidates`` nearest references in pixel L2 distance (one matrix product
    instead of SSIM against every image; SSIM's nearest image is almost always among them)."""
    d2 = squared_distances(query, reference)
    idx = d2.topk(min(candidates, len(reference)), dim=1, largest=False).indices  # (N, k)
    sims = torch.stack(
        [ssim_matrix(query[i : i + 1], reference[idx[i]])[0] for i in range(len(query))]
    )
    best, j = sims.max(1)
    return best, idx.gather(1, j[:, None]).squeeze(1)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of paired images in [0, 1] (capped at 100 for identical images)."""
    mse = (a - b).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(1.0 / mse.clamp_min(1e-10))).clamp_max(100.0)


@torch.no_grad()
def penultimate(model: nn.Module, x: torch.Tensor, batch: int = 512) -> torch.Tensor:
    """The input of the model's last linear layer (its penultimate features), eval mode."""
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    grabbed: list[torch.Tensor] = []
    handle = last.register_forward_hook(lambda _m, inp, _o: grabbed.append(inp[0].detach()))
    model.eval()
    try:
        for i in range(0, len(x), batch):
            model(x[i : i + batch])
    finally:
        handle.remove()
    return torch.cat(grabbed)


@dataclass
class Closeness:
    """Per query image: SSIM and PSNR of its SSIM-nearest reference, best feature cosine."""

    ssim: torch.Tensor
    psnr: torch.Tensor
    cosine: torch.Tensor
    nearest: torch.Tensor  # index of the SSIM-nearest reference image

    def summary(self) -> dict[str, float]:
        return {
            "ssim_mean": float(self.ssim.mean()),
            "ssim_max": float(self.ssim.max()),
            "psnr_mean": float(self.psnr.mean()),
            "cosine_mean": float(self.cosine.mean()),
        }


def closeness(
    query: torch.Tensor, reference: torch.Tensor, model: nn.Module, mean, std
) -> Closeness:
    """How close each normalised ``query`` image comes to the ``reference`` images."""
    view = (1, -1, 1, 1)
    m, s = torch.tensor(mean).view(view), torch.tensor(std).view(view)
    q01 = (query.cpu() * s + m).clamp(0, 1)
    r01 = (reference.cpu() * s + m).clamp(0, 1)
    best, idx = ssim_nearest(q01, r01)
    fq = F.normalize(penultimate(model, query.cpu()), dim=1)
    fr = F.normalize(penultimate(model, reference.cpu()), dim=1)
    return Closeness(best, psnr(q01, r01[idx]), (fq @ fr.T).max(1).values, idx)


def leakage(
    synthetic: torch.Tensor,
    synthetic_y: torch.Tensor,
    own: tuple[torch.Tensor, torch.Tensor],
    others: tuple[torch.Tensor, torch.Tensor],
    model: nn.Module,
    mean,
    std,
    *,
    holdout: tuple[torch.Tensor, torch.Tensor] | None = None,
    max_baseline: int = 200,
    seed: int = 0,
) -> tuple[dict[str, float], Closeness]:
    """Synthetic samples of one client's model against that client's images, beside the
    baseline: other clients' real images of the same classes against the same images, or,
    where no other client holds those classes (#C=1), ``holdout`` images of them (the test
    split: images no client ever held)."""
    own_x, _ = own
    ox, oy = others
    pick = torch.nonzero(torch.isin(oy, synthetic_y.unique())).flatten()
    source = 0.0  # 0: other clients' images, 1: held-out images
    if len(pick) == 0 and holdout is not None:
        ox, oy = holdout
        pick = torch.nonzero(torch.isin(oy, synthetic_y.unique())).flatten()
        source = 1.0
    gen = torch.Generator().manual_seed(seed)
    pick = pick[torch.randperm(len(pick), generator=gen)[:max_baseline]]
    syn = closeness(synthetic, own_x, model, mean, std)
    out = {f"synthetic_{k}": v for k, v in syn.summary().items()}
    if len(pick):
        base = closeness(ox[pick], own_x, model, mean, std)
        out |= {f"baseline_{k}": v for k, v in base.summary().items()}
    out["synthetic_samples"], out["baseline_samples"] = float(len(synthetic)), float(len(pick))
    out["baseline_from_holdout"] = source
    return out, syn


def round_report(
    x: torch.Tensor,
    y: torch.Tensor,
    sources: torch.Tensor,
    client_images: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    partitions: Sequence[int],
    model: nn.Module,
    mean,
    std,
    *,
    holdout: tuple[torch.Tensor, torch.Tensor] | None = None,
    seed: int = 0,
    pairs: int = 8,
) -> tuple[dict, list[tuple[torch.Tensor, torch.Tensor, float]]]:
    """One round's report: per client (``sources``) its synthetic samples against its own
    images and the baseline from the other ``partitions``; the mean over clients; and the
    ``pairs`` closest (synthetic, nearest real, SSIM) pairs of the round."""
    per_client, closest = {}, []
    for pid in sorted(set(sources.tolist())):
        mine = sources == pid
        others = [client_images(p) for p in partitions if p != pid]
        ox = torch.cat([o[0] for o in others]) if others else x[:0]
        oy = torch.cat([o[1] for o in others]) if others else y[:0]
        own = client_images(pid)
        rep, close = leakage(
            x[mine], y[mine], own, (ox, oy), model, mean, std, holdout=holdout, seed=seed
        )
        per_client[str(pid)] = rep
        for i in torch.argsort(close.ssim, descending=True)[:pairs].tolist():
            closest.append((x[mine][i], own[0][close.nearest[i]], float(close.ssim[i])))
    keys = {k for rep in per_client.values() for k in rep}
    mean_over = {
        k: float(np.mean([r[k] for r in per_client.values() if k in r])) for k in sorted(keys)
    }
    closest.sort(key=lambda t: -t[2])
    return {"clients": per_client, "mean": mean_over}, closest[:pairs]
