"""Checks on client replies before anything is averaged in.

A refused reply is logged with one line naming the node and the problem; it never reaches
the average, and the round goes on with the remaining replies.
"""

from __future__ import annotations

import math

import torch
from flwr.app import RecordDict

from fedtask.flower import NUM_EXAMPLES, PARTITION_ID

__all__ = ["NUM_EXAMPLES", "PARTITION_ID", "check_arrays", "check_metrics"]


def check_metrics(content: RecordDict, required: tuple[str, ...], max_examples: int) -> str | None:
    """Problems with a reply's MetricRecord, or None when it is usable."""
    if "metrics" not in content.metric_records:
        return "no MetricRecord 'metrics'"
    m = content.metric_records["metrics"]
    for key in required:
        if key not in m:
            return f"metric {key!r} missing"
    n = m[NUM_EXAMPLES]
    if isinstance(n, list) or not math.isfinite(float(n)) or not 0 < float(n) <= max_examples:
        return f"absurd {NUM_EXAMPLES}={n!r} (expected 1..{max_examples})"
    return None


def check_arrays(
    content: RecordDict,
    reference: dict[str, torch.Tensor],
    extra: dict[str, dict[str, torch.Tensor]] | None = None,
) -> str | None:
    """Problems with a reply's model (keys, shapes, dtypes, non-finite values), or None.

    ``extra`` names further ArrayRecords the reply must carry (e.g. SCAFFOLD's
    ``scaffold-dc``) with their reference tensors; no other ArrayRecord is allowed.
    """
    expected = {"arrays": reference, **(extra or {})}
    got = list(content.array_records.keys())
    if sorted(got) != sorted(expected):
        return f"expected ArrayRecords {sorted(expected)}, got {sorted(got)}"
    for name, ref in expected.items():
        problem = _check_state(content.array_records[name], ref)
        if problem:
            return problem if name == "arrays" else f"{name}: {problem}"
    return None


def _check_state(record, reference: dict[str, torch.Tensor]) -> str | None:
    try:
        state = record.to_torch_state_dict()
    except Exception as e:  # a malformed array cannot be decoded
        return f"undecodable arrays: {e}"
    missing, extra = reference.keys() - state.keys(), state.keys() - reference.keys()
    if missing or extra:
        return f"keys differ: missing {sorted(missing)[:3]}, extra {sorted(extra)[:3]}"
    for k, ref in reference.items():
        t = state[k]
        if t.shape != ref.shape:
            return f"{k}: shape {tuple(t.shape)} != {tuple(ref.shape)}"
        if t.dtype != ref.dtype:
            return f"{k}: dtype {t.dtype} != {ref.dtype}"
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return f"{k}: contains NaN or Inf"
    return None
