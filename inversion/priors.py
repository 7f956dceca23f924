"""Image priors and augmentations used by the inversion loss (batched, no per-sample loops)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def tv_l2(x: torch.Tensor) -> torch.Tensor:
    """Squared-difference total variation (mean over neighbouring pixel pairs)."""
    return (x[..., 1:, :] - x[..., :-1, :]).pow(2).mean() + (x[..., :, 1:] - x[..., :, :-1]).pow(
        2
    ).mean()


def tv_l1(x: torch.Tensor) -> torch.Tensor:
    """Absolute-difference total variation (mean over neighbouring pixel pairs)."""
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (
        x[..., :, 1:] - x[..., :, :-1]
    ).abs().mean()


def l2_prior(x: torch.Tensor) -> torch.Tensor:
    """Mean squared magnitude of the inputs."""
    return x.pow(2).mean()


def jitter_flip(
    x: torch.Tensor, jitter: int, flip: bool, generator: torch.Generator
) -> torch.Tensor:
    """Roll the whole batch by a random offset in ``[-jitter, jitter]`` and maybe flip it."""
    if jitter > 0:
        dx, dy = (torch.randint(-jitter, jitter + 1, (2,), generator=generator)).tolist()
        x = torch.roll(x, shifts=(dx, dy), dims=(-1, -2))
    if flip and bool(torch.rand((), generator=generator) < 0.5):
        x = torch.flip(x, dims=(-1,))
    return x


def pixel_bounds(
    mean: Sequence[float], std: Sequence[float], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel bounds of normalised inputs whose pixels lie in [0, 1]."""
    m = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=device).view(1, -1, 1, 1)
    return (0 - m) / s, (1 - m) / s
