"""A self-describing run directory: config, per-round metrics, models, plots, images."""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from fedcore.config import ExperimentConfig
from fedcore.plots import plot_accuracy, plot_client_spread
from fedcore.provenance import platform_info
from fedcore.types import StateDict


def atomic_torch_save(obj: Any, path: Path) -> Path:
    """``torch.save`` to a temp file beside ``path``, then rename it into place: a crash
    mid-write never leaves a truncated file under the final name."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
    return path


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    return v


def recorded_platform(run_dir: Path) -> dict | None:
    """The platform a run directory's meta.json records (None where there is none)."""
    meta = run_dir / "meta.json"
    return json.loads(meta.read_text()).get("platform") if meta.is_file() else None


class RunDir:
    """Writes ``config.yaml``, ``meta.json``, ``metrics.jsonl``/``.csv``, plots and models."""

    def __init__(
        self, cfg: ExperimentConfig, root: str | Path | None = None, existing: str | Path = ""
    ) -> None:
        if existing:  # resuming: keep writing into the interrupted run's directory
            self.path = Path(existing).resolve()
            self.images = self.path / "images"
            self.rows: list[dict[str, Any]] = []
            return
        self.path = path = self._new_path(cfg, root)
        (path / "plots").mkdir(parents=True)
        self.images = path / "images"
        self.images.mkdir()
        self.rows = []
        import yaml  # here only: config.yaml is its one use in a run

        (path / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        self.write_json(
            "meta.json",
            {
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "host": platform.node(),
                "python": platform.python_version(),
                "torch": torch.__version__,
                "cuda": torch.cuda.is_available(),
                "pid": os.getpid(),
                "platform": platform_info(),  # the ServerApp's process: where numbers held
            },
        )

    @staticmethod
    def _new_path(cfg: ExperimentConfig, root: str | Path | None) -> Path:
        """``output.dir`` when set (it must not hold a run yet), else a new stamped directory."""
        if cfg.output.dir:
            path = Path(cfg.output.dir).resolve()
            if path.exists() and any(path.iterdir()):
                raise FileExistsError(
                    f"output.dir {path} is not empty: choose a new directory, or continue the "
                    f"run in it with resume={path}"
                )
            return path
        stamp = time.strftime("%Y%m%d-%H%M%S")
        base = Path(root if root is not None else cfg.output.root).resolve()
        path = base / f"{stamp}-{cfg.name}-{cfg.algorithm}"
        suffix = 1
        while path.exists():
            suffix += 1
            path = base / f"{stamp}-{cfg.name}-{cfg.algorithm}-{suffix}"
        return path

    def write_json(self, name: str, obj: Any) -> Path:
        """Write ``obj`` as pretty JSON to ``name`` inside the run directory."""
        p = self.path / name
        p.write_text(json.dumps(obj, indent=2, default=str))
        return p

    def append_jsonl(self, name: str, obj: dict[str, Any]) -> None:
        """Append one JSON line to ``name`` inside the run directory."""
        with open(self.path / name, "a") as f:
            f.write(json.dumps({k: _jsonable(v) for k, v in obj.items()}, default=str) + "\n")

    def restore_rows(self, rows: list[dict[str, Any]]) -> None:
        """Reset the metrics to ``rows`` (a checkpoint's), rewriting metrics.jsonl."""
        self.rows = list(rows)
        with open(self.path / "metrics.jsonl", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in self.rows)

    def log_round(self, row: dict[str, Any]) -> None:
        """Append one round's metrics to metrics.jsonl and rewrite metrics.csv and plots."""
        row = {k: _jsonable(v) for k, v in row.items()}
        self.rows.append(row)
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        scalar_keys: list[str] = []
        for r in self.rows:
            scalar_keys += [
                k for k, v in r.items() if not isinstance(v, list) and k not in scalar_keys
            ]
        with open(self.path / "metrics.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=scalar_keys, extrasaction="ignore")
            w.writeheader()
            w.writerows(self.rows)
        plot_accuracy(self.rows, self.path / "plots" / "accuracy.png")
        plot_client_spread(self.rows, self.path / "plots" / "client_spread.png")

    def save_model(self, state: StateDict, name: str = "model_final.pt") -> Path:
        """Save a state dict atomically (write to a temp file, then rename)."""
        return atomic_torch_save(state, self.path / name)
