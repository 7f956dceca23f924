"""PNG figures for a run directory and for a comparison of runs (matplotlib, headless).

Each function saves its figure and returns it (closed), so a caller can check what it drew.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fedcore.vision import tile

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@cache
def _pyplot() -> Any:
    """matplotlib's pyplot on the headless Agg backend, imported when a figure is first drawn
    (about 25 MB a process: a module that imports this one, but draws nothing, pays none)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def __getattr__(name: str) -> Any:
    """``from fedcore.plots import plt``: pyplot, on the Agg backend."""
    if name == "plt":
        return _pyplot()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


MAX_BARS = 100  # more clients than this: the label mix as a heatmap, not one bar each


def plot_label_mix(counts: np.ndarray, classes: Sequence[str], path: Path) -> Figure:
    """Stacked bars: samples per class for every client; beyond ``MAX_BARS`` clients, a
    heatmap of each client's class shares (a figure of fixed size at any federation size)."""
    plt = _pyplot()
    n_clients, n_cls = counts.shape
    if n_clients > MAX_BARS:
        shares = counts / np.maximum(counts.sum(1, keepdims=True), 1)
        fig, ax = plt.subplots(figsize=(10, 4))
        im = ax.imshow(shares.T, aspect="auto", interpolation="nearest", cmap="viridis")
        ax.set_yticks(range(n_cls), [str(c) for c in classes], fontsize=7)
        ax.set_xlabel("client (partition-id)")
        ax.set_title(f"Label mix of {n_clients} clients (share of each client's samples)")
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return fig
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * n_clients + 2), 4))
    bottom = np.zeros(n_clients)
    cmap = plt.get_cmap("tab10" if n_cls <= 10 else "tab20")
    for c in range(n_cls):
        ax.bar(
            range(n_clients),
            counts[:, c],
            bottom=bottom,
            color=cmap(c % cmap.N),
            label=str(classes[c]),
        )
        bottom += counts[:, c]
    ax.set_xlabel("client (partition-id)")
    ax.set_ylabel("training samples")
    ax.set_xticks(range(n_clients))
    ax.set_title("Label mix per client")
    ax.legend(fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return fig


def plot_accuracy(rows: Sequence[dict], path: Path) -> Figure:
    """Global accuracy and the client mean / worst-10% / best-10% per round."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    central = [row for row in rows if row.get("global_accuracy") is not None]
    if central:  # a federation of sites may have no central test set
        ax.plot([row["round"] for row in central], [row["global_accuracy"] for row in central],
                "o-", label="global test")  # fmt: skip
    evaluated = [row for row in rows if "client_acc_mean" in row]  # rounds with federated eval
    if evaluated:
        re = [row["round"] for row in evaluated]
        ax.plot(re, [row["client_acc_mean"] for row in evaluated], "s--", label="client mean")
        ax.fill_between(
            re,
            [row["client_acc_worst10"] for row in evaluated],
            [row["client_acc_best10"] for row in evaluated],
            alpha=0.2,
            label="client worst-10% .. best-10%",
        )
    ax.set_xlabel("round")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return fig


def reported(accuracies: Sequence[float | None] | None) -> list[float]:
    """The accuracies of the clients that reported (None and NaN left out)."""
    return [float(a) for a in accuracies or [] if a is not None and a == a]


def plot_client_spread(rows: Sequence[dict], path: Path) -> Figure:
    """Box plot of per-client accuracy per round (clients that did not report are left out)."""
    plt = _pyplot()
    spread = []
    for row in rows:
        accs = reported(row.get("client_accuracies"))
        if accs:
            spread.append((row["round"], accs))
    fig, ax = plt.subplots(figsize=(max(6, 0.4 * len(spread) + 2), 4))
    if spread:
        ax.boxplot([a for _, a in spread], positions=[r for r, _ in spread])
    ax.set_xlabel("round")
    ax.set_ylabel("per-client accuracy (own test set)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return fig


def plot_comparison(results: Mapping[str, Mapping], path: Path, title: str) -> Figure:
    """Methods side by side: global accuracy per round (left) and, from each method's last
    round, every client's accuracy on its own test set, sorted worst to best (right; x is the
    client's rank as a share of the clients, so federations of any size line up)."""
    plt = _pyplot()
    fig, (curve, clients) = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, r in results.items():
        acc = r["accuracy_per_round"]
        curve.plot(range(1, len(acc) + 1), acc, marker="o", ms=3, label=name)
        per = sorted(reported(r.get("client_accuracies")))
        if per:
            rank = (np.arange(len(per)) + 0.5) / len(per) * 100
            clients.plot(rank, per, marker=".", ms=4, label=f"{name} (std {np.std(per):.3f})")
    curve.set_xlabel("round")
    curve.set_ylabel("global test accuracy")
    clients.set_xlabel("clients, worst to best (%)")
    clients.set_ylabel("client accuracy, last round (own test set)")
    clients.set_xlim(0, 100)
    clients.set_ylim(0, 1.02)
    for ax in (curve, clients):
        ax.grid(alpha=0.3)
    curve.legend(fontsize=8)
    clients.legend(fontsize=8, loc="lower right")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return fig


def save_image_grid(
    x: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    mean: Sequence[float],
    std: Sequence[float],
    path: Path,
    per_class: int = 8,
) -> Figure:
    """Grid of images (N,C,H,W, normalised), one row per class, up to ``per_class`` each,
    tiled by ``torchvision.utils.make_grid`` and titled per row."""
    plt = _pyplot()
    m = np.asarray(mean).reshape(1, -1, 1, 1)
    s = np.asarray(std).reshape(1, -1, 1, 1)
    img = np.clip(x * s + m, 0, 1)
    blank = np.ones((1, *img.shape[1:]), dtype=img.dtype)
    rows = []
    for c in range(len(classes)):
        mine = img[np.flatnonzero(labels == c)[:per_class]]
        rows.append(np.concatenate([mine, *[blank] * (per_class - len(mine))]))
    pad = 2
    grid = tile(torch.from_numpy(np.concatenate(rows)).float(), per_class, pad)
    h = img.shape[2] + pad  # one row of images and the padding below it
    fig, ax = plt.subplots(figsize=(per_class * 0.9 + 1.2, len(classes) * 0.95))
    ax.imshow(grid.squeeze(-1) if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([pad + h * c + (h - pad) / 2 for c in range(len(classes))])
    ax.set_yticklabels([str(n)[:12] for n in classes], fontsize=6)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    fig.tight_layout(pad=0.2)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return fig


def save_pairs(
    pairs: Sequence[tuple[np.ndarray, np.ndarray, float]],
    mean: Sequence[float],
    std: Sequence[float],
    path: Path,
) -> Figure | None:
    """Two rows: synthetic samples (top) above their nearest real image (bottom), with SSIM;
    nothing (None) without pairs."""
    if not pairs:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(2, len(pairs), figsize=(len(pairs) * 1.0, 2.3), squeeze=False)
    m = np.asarray(mean).reshape(-1, 1, 1)
    s = np.asarray(std).reshape(-1, 1, 1)
    for j, (syn, real, score) in enumerate(pairs):
        for row, x in enumerate((syn, real)):
            im = np.clip(np.asarray(x) * s + m, 0, 1).transpose(1, 2, 0)
            ax = axes[row, j]
            ax.axis("off")
            ax.imshow(im.squeeze(-1) if im.shape[-1] == 1 else im, cmap="gray", vmin=0, vmax=1)
        axes[0, j].set_title(f"SSIM {score:.2f}", fontsize=6)
    fig.suptitle("synthetic (top) and the nearest real image of its client (bottom)", fontsize=7)
    fig.tight_layout(pad=0.2)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return fig
