"""Experiment configuration: a typed schema, YAML loading, overrides and validation.

An experiment is a YAML file (see ``configs/``). Flower's run config names the file
(``experiment``) and may change single values (``overrides="train.lr=0.05 rounds=3"``).
Everything is checked once, up front; every problem is reported with the key and the fix.
"""

from __future__ import annotations

import dataclasses
import shlex
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fedtask.data import DATASETS
from fedtask.faults import BAD_UPDATE_KINDS
from fedtask.models import MODELS
from fedtask.partition import PARTITIONERS
from fedtask.training import TrainConfig
from inversion.allocation import ALLOCATIONS
from inversion.engine import InversionConfig
from inversion.zdac import ZdacConfig
from inversion.zdas import ZdasConfig

ALGORITHMS = ("fedavg", "fedprox", "scaffold", "zdac", "zdas", "zda")


class ConfigError(ValueError):
    """The experiment configuration is invalid; the message names every problem."""


@dataclass(frozen=True)
class DataConfig:
    """Which dataset to read, from where, and optional random subsets for quick runs."""

    dataset: str = "fashion-mnist"
    path: str = ""
    test_path: str = ""
    train_subset: int | None = None
    test_subset: int | None = None


@dataclass(frozen=True)
class PartitionConfig:
    """How the training split is spread over clients (flwr-datasets argument names)."""

    name: str = "dirichlet"
    num_partitions: int = 10
    partition_by: str = "label"
    alpha: float = 0.1
    min_partition_size: int = 10
    num_classes_per_partition: int = 2
    num_shards_per_partition: int = 2
    seed: int | None = None  # defaults to the experiment seed
    client_test_size: int = 1000


@dataclass(frozen=True)
class ModelConfig:
    """Model architecture by name."""

    name: str = "cnn"


@dataclass(frozen=True)
class FedProxConfig:
    """FedProx's proximal weight; ``compose_with_zda`` adds the term to zdac/zdas/zda too."""

    mu: float = 0.01
    compose_with_zda: bool = False


@dataclass(frozen=True)
class ServerConfig:
    """Round orchestration."""

    min_train_nodes: int | None = None  # default: every partition, every round
    round_timeout: float = 3600.0
    connect_timeout: float = 300.0  # how long to wait for all SuperNodes to connect


@dataclass(frozen=True)
class FaultsConfig:
    """Fault injection for tests: one client sends a corrupt update every round."""

    bad_update_partition: int | None = None
    bad_update_kinds: str = "nan"  # comma-separated, cycled one per round
    stop_after_round: int | None = None  # end the ServerApp early (a simulated crash)


@dataclass(frozen=True)
class OutputConfig:
    """Where run directories go."""

    root: str = "runs"


@dataclass(frozen=True)
class ExperimentConfig:
    """One federated experiment."""

    name: str = "default"
    seed: int = 0
    rounds: int = 5
    algorithm: str = "fedavg"
    data: DataConfig = field(default_factory=DataConfig)
    partition: PartitionConfig = field(default_factory=PartitionConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    fedprox: FedProxConfig = field(default_factory=FedProxConfig)
    zdac: ZdacConfig = field(default_factory=ZdacConfig)
    zdas: ZdasConfig = field(default_factory=ZdasConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    faults: FaultsConfig = field(default_factory=FaultsConfig)
    resume: str = ""  # a run directory to continue from its last checkpoint

    @property
    def partition_seed(self) -> int:
        return self.seed if self.partition.seed is None else self.partition.seed

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------ building
def _check_type(value: Any, hint: Any, key: str, errors: list[str]) -> Any:
    """Coerce/verify one scalar against its type hint; record a message on mismatch."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and (
        not isinstance(value, hint) or (hint is int and isinstance(value, bool))
    ):
        errors.append(f"{key}: expected {hint.__name__}, got {value!r}")
    return value


def _build(cls: type, data: dict[str, Any], prefix: str, errors: list[str]) -> Any:
    """Instantiate dataclass ``cls`` from ``data``, collecting unknown keys and type errors."""
    if not isinstance(data, dict):
        errors.append(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
        return cls()
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for k in data:
        if k not in names:
            errors.append(f"{prefix}{k}: unknown key (known: {', '.join(sorted(names))})")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            kwargs[f.name] = _build(hint, data[f.name], f"{prefix}{f.name}.", errors)
        else:
            kwargs[f.name] = _check_type(data[f.name], hint, prefix + f.name, errors)
    return cls(**kwargs)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    *parents, leaf = dotted.split(".")
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted}: {p} is not a section")
    node[leaf] = value


def parse_overrides(text: str) -> dict[str, Any]:
    """``"a.b=1 c=fedprox"`` -> nested dict with YAML-typed values."""
    tree: dict[str, Any] = {}
    for item in shlex.split(text or ""):
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form dotted.key=value")
        _set_dotted(tree, key.strip(), yaml.safe_load(raw) if raw != "" else "")
    return tree


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(
    experiment: str | Path | None = None,
    overrides: str | dict[str, Any] = "",
    base_dir: str | Path = ".",
) -> ExperimentConfig:
    """Read an experiment YAML (relative to ``base_dir``), apply overrides, validate."""
    tree: dict[str, Any] = {}
    if experiment:
        path = Path(experiment)
        path = path if path.is_absolute() else Path(base_dir) / path
        if not path.is_file():
            raise ConfigError(f"experiment file {path} does not exist (see configs/ for examples)")
        try:
            tree = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"experiment file {path} is not valid YAML: {e}") from e
    extra = parse_overrides(overrides) if isinstance(overrides, str) else overrides
    return validate(_merge(tree, extra))


def validate(tree: dict[str, Any]) -> ExperimentConfig:
    """Build and check an :class:`ExperimentConfig`; raise one error listing all problems."""
    errors: list[str] = []
    cfg: ExperimentConfig = _build(ExperimentConfig, tree, "", errors)
    if errors:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(errors))

    def need(ok: bool, msg: str) -> None:
        if not ok:
            errors.append(msg)

    p, t = cfg.partition, cfg.train
    need(cfg.algorithm in ALGORITHMS, f"algorithm: {cfg.algorithm!r} is not one of {ALGORITHMS}")
    need(cfg.rounds >= 1, f"rounds: must be >= 1, got {cfg.rounds}")
    need(cfg.data.dataset in DATASETS, f"data.dataset: {cfg.data.dataset!r} not in {DATASETS}")
    need(
        cfg.data.dataset != "npz" or bool(cfg.data.path and cfg.data.test_path),
        "data.path and data.test_path: both .npz files are required for dataset 'npz'",
    )
    for key in ("train_subset", "test_subset"):
        v = getattr(cfg.data, key)
        need(v is None or v >= 1, f"data.{key}: must be >= 1 or null, got {v}")
    need(p.name in PARTITIONERS, f"partition.name: {p.name!r} not in {tuple(PARTITIONERS)}")
    need(p.num_partitions >= 1, f"partition.num_partitions: must be >= 1, got {p.num_partitions}")
    need(p.partition_by == "label", "partition.partition_by: only 'label' is supported")
    need(p.alpha > 0, f"partition.alpha: must be > 0, got {p.alpha}")
    need(p.min_partition_size >= 0, "partition.min_partition_size: must be >= 0")
    need(p.num_classes_per_partition >= 1, "partition.num_classes_per_partition: must be >= 1")
    need(p.num_shards_per_partition >= 1, "partition.num_shards_per_partition: must be >= 1")
    need(p.client_test_size >= 1, "partition.client_test_size: must be >= 1")
    need(cfg.model.name in MODELS, f"model.name: {cfg.model.name!r} not in {tuple(MODELS)}")
    need(t.local_epochs >= 1, f"train.local_epochs: must be >= 1, got {t.local_epochs}")
    need(t.batch_size >= 2, f"train.batch_size: must be >= 2 (BatchNorm), got {t.batch_size}")
    need(t.lr > 0, f"train.lr: must be > 0, got {t.lr}")
    need(0 <= t.momentum < 1, f"train.momentum: must be in [0, 1), got {t.momentum}")
    need(t.weight_decay >= 0, "train.weight_decay: must be >= 0")
    need(cfg.fedprox.mu >= 0, f"fedprox.mu: must be >= 0, got {cfg.fedprox.mu}")
    for side in ("zdac", "zdas"):
        _check_inversion(getattr(cfg, side).inversion, f"{side}.inversion.", need)
        z = getattr(cfg, side)
        need(z.start_round >= 1, f"{side}.start_round: must be >= 1, got {z.start_round}")
        need(z.pool_max_age >= 0, f"{side}.pool_max_age: must be >= 0")
        need(z.kd_weight >= 0, f"{side}.kd_weight: must be >= 0")
        need(z.kd_temperature > 0, f"{side}.kd_temperature: must be > 0")
    zc, zs = cfg.zdac, cfg.zdas
    need(zc.allocation in ALLOCATIONS, f"zdac.allocation: {zc.allocation!r} not in {ALLOCATIONS}")
    need(zc.budget >= 0, f"zdac.budget: must be >= 0 (ratio < 1 or a count), got {zc.budget}")
    need(zc.synthetic_weight >= 0, "zdac.synthetic_weight: must be >= 0")
    need(
        zs.end_round == 0 or zs.end_round >= zs.start_round,
        f"zdas.end_round: must be 0 (no end) or >= zdas.start_round ({zs.start_round}), "
        f"got {zs.end_round}",
    )
    need(zs.samples_per_client >= 1, "zdas.samples_per_client: must be >= 1")
    need(zs.finetune_epochs >= 0, "zdas.finetune_epochs: must be >= 0")
    need(zs.finetune_lr > 0, "zdas.finetune_lr: must be > 0")
    need(zs.finetune_batch_size >= 2, "zdas.finetune_batch_size: must be >= 2 (BatchNorm)")
    need(0 <= zs.finetune_momentum < 1, "zdas.finetune_momentum: must be in [0, 1)")
    m = cfg.server.min_train_nodes
    need(
        m is None or 1 <= m <= p.num_partitions,
        f"server.min_train_nodes: must be in 1..{p.num_partitions} or null, got {m}",
    )
    bad = [k for k in cfg.faults.bad_update_kinds.split(",") if k not in BAD_UPDATE_KINDS]
    need(not bad, f"faults.bad_update_kinds: {bad} not in {BAD_UPDATE_KINDS}")
    need(cfg.server.round_timeout > 0, "server.round_timeout: must be > 0 seconds")
    need(cfg.server.connect_timeout > 0, "server.connect_timeout: must be > 0 seconds")
    if errors:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(errors))
    return cfg


def _check_inversion(inv: InversionConfig, prefix: str, need) -> None:
    need(inv.steps >= 0 and inv.warm_steps >= 0, f"{prefix}steps/warm_steps: must be >= 0")
    need(inv.lr > 0, f"{prefix}lr: must be > 0, got {inv.lr}")
    need(inv.batch_size >= 2, f"{prefix}batch_size: must be >= 2 (BatchNorm statistics)")
    for k in ("ce", "bn", "first_bn_multiplier", "tv_l1", "tv_l2", "l2", "adi"):
        need(getattr(inv, k) >= 0, f"{prefix}{k}: must be >= 0, got {getattr(inv, k)}")
    need(inv.adi_temperature > 0, f"{prefix}adi_temperature: must be > 0")
    need(inv.jitter >= 0, f"{prefix}jitter: must be >= 0")


def config_from_run_config(run_config: dict[str, Any], base_dir: str | Path) -> ExperimentConfig:
    """Build the experiment from Flower's run config (keys ``experiment`` and ``overrides``)."""
    known = {"experiment", "overrides"}
    unknown = set(run_config) - known
    if unknown:
        raise ConfigError(f"unknown run-config keys {sorted(unknown)}; known: {sorted(known)}")
    return load_config(
        str(run_config.get("experiment", "")), str(run_config.get("overrides", "")), base_dir
    )
