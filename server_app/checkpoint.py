"""Atomic per-round checkpoints and exact resume.

A checkpoint holds the global model, the strategy's state (synthetic pools included), the
last finished round, the Python/NumPy/torch RNG states, the metrics so far and the
experiment config. Resuming restores all of it and continues at the next round. A missing,
corrupt or mismatched checkpoint is an error, never a silent fresh start.
"""

from __future__ import annotations

import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedcore.experiment import ADDED_OFF
from fedcore.rundir import atomic_torch_save

CHECKPOINT = "checkpoint.pt"
# Keys that may differ between the interrupted run and its resumption.
RESUMABLE_CHANGES = (
    "resume", "rounds", "faults", "output", "simulation",
    "server.round_timeout", "server.connect_timeout", "server.fraction_evaluate",
    "server.min_evaluate_nodes", "server.evaluate_every", "server.partition_map",
)  # fmt: skip


class CheckpointError(RuntimeError):
    """The checkpoint cannot be used; the message says why and what to do."""


def save_checkpoint(run_dir: Path, **payload: Any) -> Path:
    """Write ``checkpoint.pt`` atomically (temp file + rename) with RNG states added."""
    payload["rng"] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    return atomic_torch_save(payload, run_dir / CHECKPOINT)


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            key = f"{prefix}{k}"
            added_off = k not in a and key in ADDED_OFF and b.get(k) == ADDED_OFF[key]
            if key in RESUMABLE_CHANGES or added_off:  # added since the checkpoint, off
                continue
            out += _diff(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [f"{prefix.rstrip('.')}: checkpoint {a!r} vs now {b!r}"]


def load_checkpoint(run_dir: Path, config: dict[str, Any]) -> dict[str, Any]:
    """Load and check the checkpoint of ``run_dir`` against ``config``; restore RNG states."""
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"cannot resume: {path} does not exist (is resume= a run directory?)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, ValueError) as e:
        raise CheckpointError(f"cannot resume: {path} is corrupt ({e}); start a new run") from e
    missing = {"round", "state", "strategy", "rows", "config", "rng"} - set(ckpt)
    if not isinstance(ckpt, dict) or missing:
        raise CheckpointError(f"cannot resume: {path} lacks {sorted(missing)}; start a new run")
    diffs = _diff(ckpt["config"], config)
    if diffs:
        raise CheckpointError(
            f"cannot resume {run_dir}: the experiment differs from the checkpoint's:\n  - "
            + "\n  - ".join(diffs)
        )
    random.setstate(ckpt["rng"]["python"])
    np.random.set_state(ckpt["rng"]["numpy"])
    torch.set_rng_state(ckpt["rng"]["torch"])
    return ckpt
