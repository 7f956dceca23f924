"""ZDAS's guard (``zdas.guard``): the clients say whether the server's fine-tuning helps them,
and the server scales the fine-tuning's step by how far it is trusted.

From the second round on, every train message carries last round's plain average (the
model before fine-tuning) besides the global model, which is that average moved by
``trust`` of the fine-tuning's step. Before training, a client scores both on its own
samples (mean cross-entropy, eval mode) and replies the two losses. The server takes the
median over the clients of the difference (global minus plain; unweighted, so that no one
client, nor an inflated example count, decides): below 0 the fine-tuning helped these
clients and the trust doubles (at most 1); above 0 it halves (at least :data:`MIN_TRUST`);
at 0 (two equal models, e.g. after a gated round) it stays. The round's global model is
then its average plus ``trust`` times the fine-tuning's step.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from fedcore.algorithms.base import ClientRound, LocalPlan, Received, own_loss
from fedcore.protocol import GUARD_GLOBAL_LOSS, GUARD_PLAIN_LOSS, TrainReply
from fedcore.types import StateDict

MIN_TRUST = 1.0 / 16  # the trust never drops below this share of the fine-tuning's step


def blend(plain: StateDict, tuned: StateDict, trust: float) -> StateDict:
    """``plain + trust * (tuned - plain)`` for floating entries (in float64, cast back);
    the others (BatchNorm's batch counters) from ``tuned``."""
    if trust == 1.0:
        return tuned
    out: StateDict = {}
    for k, t in tuned.items():
        if not t.is_floating_point():
            out[k] = t
            continue
        p = plain[k].double()
        out[k] = (p + trust * (t.double() - p)).to(t.dtype)
    return out


def next_trust(trust: float, delta: float | None) -> float:
    """Doubled (at most 1) when the clients' median loss difference ``delta`` (global minus
    plain) is below 0, halved (at least :data:`MIN_TRUST`) above 0; else unchanged."""
    if delta is None or delta == 0:
        return trust
    return min(1.0, 2 * trust) if delta < 0 else max(MIN_TRUST, trust / 2)


def median_delta(replies: Sequence[TrainReply]) -> float | None:
    """The median over the replies that carry two finite losses >= 0 of (global - plain);
    None when none does."""
    deltas = [
        float(r.metrics[GUARD_GLOBAL_LOSS]) - float(r.metrics[GUARD_PLAIN_LOSS])
        for r in replies
        if _usable(r.metrics)
    ]
    return float(np.median(deltas)) if deltas else None


def guarded(
    trust: float, got: Received, tuned: StateDict
) -> tuple[dict[str, Any], StateDict, dict[str, float]]:
    """The guard's next state (trust from the replies' scores, this round's average), the
    average moved by that trust of the step to ``tuned``, and the metrics."""
    delta = median_delta(got.replies)
    trust = next_trust(trust, delta)
    metrics = {"zdas-trust": trust}
    if delta is not None:
        metrics["zdas-guard-delta"] = delta  # < 0: the fine-tuning helped most clients
    state = {"trust": trust, "plain": got.averaged}
    return state, blend(got.averaged, tuned, trust), metrics


def _usable(metrics: dict[str, Any]) -> bool:
    vals = (metrics.get(GUARD_GLOBAL_LOSS), metrics.get(GUARD_PLAIN_LOSS))
    numbers = [v for v in vals if isinstance(v, int | float) and not isinstance(v, bool)]
    return len(numbers) == 2 and all(math.isfinite(v) and v >= 0 for v in numbers)


def client_scores(rnd: ClientRound, plan: LocalPlan, plain: StateDict) -> None:
    """Put the received global model's and ``plain``'s mean cross-entropy on this client's
    own samples into the reply's metrics (before training)."""
    other = copy.deepcopy(rnd.model)
    other.load_state_dict(plain)
    plan.metrics[GUARD_GLOBAL_LOSS] = own_loss(rnd, plan)
    plan.metrics[GUARD_PLAIN_LOSS] = own_loss(rnd, plan, other)
