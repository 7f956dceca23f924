"""The server's side of a federation of sites: from what each site reported before round 1
to one data spec, the sites taken in (numbered by name) and the sites refused, with reasons.

The run config may fix the input shape, the number of classes and the normalisation
(``data.input_shape``, ``data.num_classes``, ``data.mean``/``data.std``); what it leaves open
comes from the sites: the shape most sites hold, the largest label + 1, and the mean and
standard deviation of the pooled pixels from the sites' per-channel sums (float64; the
simulation's statistics are float32 reductions over the whole split, so give
``data.mean``/``data.std`` where numbers must match a simulation bit for bit, as the
site tool's ``sites.toml`` does). A site whose summary does not fit is refused and never
sampled; the others go on.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedcore.data import DataSpec


class SiteError(ValueError):
    """No usable federation can be made of the sites' reports; the message says why."""


@dataclass(frozen=True)
class SiteReport:
    """One site's answer before round 1: its name and summary, or the reason it refused."""

    node_id: int
    name: str
    summary: dict[str, Any] = field(default_factory=dict)
    refusal: str = ""


@dataclass(frozen=True)
class SiteFederation:
    """The sites taken in (``node_id -> partition-id``, by name), the spec, the refused."""

    partitions: dict[int, int]
    names: tuple[str, ...]  # by partition id
    spec: DataSpec
    num_examples: tuple[int, ...]  # by partition id
    counts: np.ndarray | None  # (sites, classes) when every site shared its label counts
    refused: dict[int, str]  # node_id -> reason

    @property
    def num_clients(self) -> int:
        return len(self.names)


def parse_floats(text: str) -> tuple[float, ...]:
    """``"0.1,0.2"`` -> (0.1, 0.2); ``""`` -> ()."""
    return tuple(float(v) for v in text.split(",") if v.strip())


def parse_shape(text: str) -> tuple[int, ...]:
    """``"1,28,28"`` -> (1, 28, 28); ``""`` -> ()."""
    return tuple(int(v) for v in text.split(",") if v.strip())


def _problem(s: SiteReport, shape: tuple[int, ...], num_classes: int) -> str:
    if s.refusal:
        return s.refusal
    m = s.summary
    if int(m.get("num-examples", 0)) < 1:
        return "it holds no training samples"
    if tuple(m.get("input-shape", ())) != shape:
        return f"its images are {tuple(m.get('input-shape', ()))}, the federation's {shape}"
    if int(m.get("max-label", -1)) >= num_classes:
        return f"label {m['max-label']} is outside the federation's 0..{num_classes - 1}"
    return ""


def _normalisation(usable: list[SiteReport], channels: int) -> tuple[tuple, tuple]:
    """Pooled per-channel mean and (unbiased) std of the sites' pixels in [0, 1]."""
    n = sum(int(s.summary["pixel-count"]) for s in usable)
    total = np.sum([s.summary["channel-sum"] for s in usable], axis=0)
    squares = np.sum([s.summary["channel-sumsq"] for s in usable], axis=0)
    mean = total / n
    var = (squares - n * mean**2) / max(n - 1, 1)
    std = np.sqrt(np.maximum(var, 0.0)).clip(min=1e-6)
    if len(mean) != channels:
        raise SiteError(f"the sites' pixel sums have {len(mean)} channels, not {channels}")
    f32 = np.asarray(mean, dtype=np.float32), np.asarray(std, dtype=np.float32)
    return tuple(float(v) for v in f32[0]), tuple(float(v) for v in f32[1])


def resolve(
    reports: list[SiteReport],
    input_shape: tuple[int, ...] = (),
    num_classes: int = 0,
    mean: tuple[float, ...] = (),
    std: tuple[float, ...] = (),
) -> SiteFederation:
    """The federation of every site that fits (see the module docstring)."""
    answered = [s for s in reports if not s.refusal]
    if not input_shape:
        shapes = Counter(tuple(s.summary.get("input-shape", ())) for s in answered)
        input_shape = shapes.most_common(1)[0][0] if shapes else ()
    if not num_classes:
        num_classes = 1 + max((int(s.summary.get("max-label", -1)) for s in answered), default=-1)
    refused = {}
    for s in reports:
        if reason := _problem(s, input_shape, num_classes):
            refused[s.node_id] = f"site {s.name!r}: {reason}"
    usable = sorted((s for s in reports if s.node_id not in refused), key=lambda s: s.name)
    if not usable:
        raise SiteError("no site is usable: " + "; ".join(refused.values()) if refused else
                        "no site answered")  # fmt: skip
    names = [s.name for s in usable]
    if len(set(names)) < len(names):
        dup = sorted(n for n, c in Counter(names).items() if c > 1)
        raise SiteError(f"two SuperNodes call themselves {dup}: give each a site-name")
    if not mean:
        if any("channel-sum" not in s.summary for s in usable):
            raise SiteError("set data.mean and data.std, or let the sites share pixel sums")
        mean, std = _normalisation(usable, input_shape[0])
    counts = None
    if all("label-counts" in s.summary for s in usable):
        counts = np.zeros((len(usable), num_classes), dtype=np.int64)
        for i, s in enumerate(usable):
            c = s.summary["label-counts"][:num_classes]
            counts[i, : len(c)] = c
    classes = tuple(str(c) for c in range(num_classes))
    return SiteFederation(
        {s.node_id: i for i, s in enumerate(usable)},
        tuple(names),
        DataSpec(tuple(input_shape), tuple(mean), tuple(std), classes),
        tuple(int(s.summary["num-examples"]) for s in usable),
        counts,
        refused,
    )
