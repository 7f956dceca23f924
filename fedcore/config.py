"""Experiment configuration: one typed schema, read from Flower's run config, validated once.

The dataclass defaults below are the default experiment and the one source of defaults:
``[tool.flwr.app.config]`` in pyproject.toml lists every key with the same value (written by
``python -m fedcore.config --write``, checked by a test), so Flower knows and checks every
key. Precedence, lowest first: these defaults, then an experiment TOML file
(``flwr run . --run-config configs/x.toml``) or inline keys
(``flwr run . --run-config "algorithm='zda' rounds=5"``); Flower takes one or the other,
``scripts/run.sh`` merges a file and inline keys (inline wins). Every problem is reported
at once, with its key and the fix.
"""

from __future__ import annotations

import dataclasses
import shlex
import sys
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from fedcore import vision
from fedcore.algorithms import ALGORITHMS
from fedcore.algorithms.fedprox import FedProxConfig
from fedcore.algorithms.zdac import ZdacConfig
from fedcore.algorithms.zdas import ZdasConfig
from fedcore.datasets import BUILTIN, DATASETS
from fedcore.faults import BAD_UPDATE_KINDS
from fedcore.models import MODELS
from fedcore.partition import PARTITIONERS
from fedcore.schema import build, flatten, nest
from fedcore.training import TrainConfig


class ConfigError(ValueError):
    """The experiment configuration is invalid; the message names every problem."""


@dataclass(frozen=True)
class DataConfig:
    """Which dataset to read, from where, and optional random subsets for quick runs."""

    dataset: str = "fashion-mnist"
    path: str = ""
    test_path: str = ""
    train_subset: int = 0  # a random subset of this size (0: the whole split)
    test_subset: int = 0


@dataclass(frozen=True)
class PartitionConfig:
    """How the training split is spread over clients (flwr-datasets argument names)."""

    name: str = "dirichlet"
    num_partitions: int = 0  # 0: one partition per SuperNode (the federation's num-partitions)
    partition_by: str = "label"
    alpha: float = 0.1
    min_partition_size: int = 10
    self_balancing: bool = False  # dirichlet: no more samples for partitions above average
    num_classes_per_partition: int = 2
    num_shards_per_partition: int = 2
    seed: int = -1  # -1: the experiment seed
    client_test_size: int = 1000


@dataclass(frozen=True)
class ModelConfig:
    """Model architecture by name."""

    name: str = "cnn"


@dataclass(frozen=True)
class ServerConfig:
    """Round orchestration: which clients train and which are evaluated, seeded per round.

    A round samples ``max(floor(fraction_train * N), min_train_nodes)`` of the N clients
    and needs ``min_train_nodes`` usable replies (0: every sampled client). Federated
    evaluation runs every ``evaluate_every`` rounds on a sample sized the same way, and on
    every client in the last round; the central test set is scored every round.
    """

    fraction_train: float = 1.0
    min_train_nodes: int = 0
    fraction_evaluate: float = 1.0
    min_evaluate_nodes: int = 0
    evaluate_every: int = 1
    round_timeout: float = 3600.0
    secure_aggregation: bool = False  # SecAgg+ (fedavg, fedprox, zdac): see the README
    connect_timeout: float = 300.0  # how long to wait for all SuperNodes to connect


@dataclass(frozen=True)
class SimulationConfig:
    """Resources of each simulated ClientApp, passed to Flower's simulation engine as
    ``--federation-config client-resources-num-cpus/-num-gpus`` by ``scripts/run.sh`` (and
    ``scripts/simulate.py``); a plain ``flwr run .`` takes them from its own flags."""

    client_cpus: int = 1  # 1 is fastest on a 2-core CPU machine (see README, Measured)
    client_gpus: float = -1.0  # share of a GPU per ClientApp; -1: 0.25 with CUDA, else 0

    def gpus(self, cuda: bool) -> float:
        """The GPU share to request, resolving the automatic -1."""
        return self.client_gpus if self.client_gpus >= 0 else (0.25 if cuda else 0.0)


@dataclass(frozen=True)
class FaultsConfig:
    """Fault injection for tests: one client sends a corrupt update every round."""

    bad_update_partition: int = -1  # -1: none
    bad_update_kinds: str = "nan"  # comma-separated, cycled one per round
    stop_after_round: int = 0  # end the ServerApp after this round (a simulated crash; 0: off)
    hang_partition: int = -1  # this partition's ClientApp never replies to a train message


@dataclass(frozen=True)
class OutputConfig:
    """Where the run directory goes: ``dir`` exactly, else a new one under ``root``."""

    root: str = "runs"
    dir: str = ""
    leakage: bool = False  # ZDAS: how close synthetic samples come to each client's images


@dataclass(frozen=True)
class ExperimentConfig:
    """One federated experiment."""

    name: str = "fmnist-dir0.1"
    seed: int = 0
    rounds: int = 20
    algorithm: str = "fedavg"
    data: DataConfig = field(default_factory=DataConfig)
    partition: PartitionConfig = field(default_factory=PartitionConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    fedprox: FedProxConfig = field(default_factory=FedProxConfig)
    zdac: ZdacConfig = field(default_factory=ZdacConfig)
    zdas: ZdasConfig = field(default_factory=ZdasConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    simulation: SimulationConfig = field(default_factory=SimulationConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    faults: FaultsConfig = field(default_factory=FaultsConfig)
    resume: str = ""  # a run directory to continue from its last checkpoint

    @property
    def partition_seed(self) -> int:
        return self.seed if self.partition.seed < 0 else self.partition.seed

    @property
    def num_clients(self) -> int:
        """The number of clients (known once :meth:`with_clients` has been applied)."""
        return self.partition.num_partitions

    def with_clients(self, n: int) -> ExperimentConfig:
        """This experiment on a federation of ``n`` partitions (checked against the config)."""
        p = self.partition
        if p.num_partitions not in (0, n):
            raise ConfigError(
                f"the federation has {n} partitions but partition.num_partitions="
                f"{p.num_partitions}; in simulation run `flwr run . --federation-config "
                f"num-supernodes={p.num_partitions}`, or set partition.num_partitions=0 "
                "(follow the federation)"
            )
        for side in ("train", "evaluate"):
            m = getattr(self.server, f"min_{side}_nodes")
            if not 0 <= m <= n:
                raise ConfigError(f"server.min_{side}_nodes: must be in 0..{n} (0: all), got {m}")
        return dataclasses.replace(self, partition=dataclasses.replace(p, num_partitions=n))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------ loading
def parse_overrides(text: str) -> dict[str, Any]:
    """``"a.b=1 c=fedprox"`` -> nested dict with YAML-typed values."""
    flat: dict[str, Any] = {}
    try:
        items = shlex.split(text or "")
    except ValueError as e:  # an unclosed quote
        raise ConfigError(f"overrides {text!r}: {e}") from e
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form dotted.key=value")
        try:
            flat[key.strip()] = _yaml_value(raw)
        except Exception as e:  # any YAML error (yaml is imported lazily, so no narrower type)
            raise ConfigError(f"override {item!r}: the value cannot be read: {e}") from e
    try:
        return nest(flat)
    except ValueError as e:
        raise ConfigError(f"override {e}") from e


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
    """Read an experiment TOML (relative to ``base_dir``), apply overrides, validate."""
    tree = read_experiment(experiment, base_dir) if experiment else {}
    extra = parse_overrides(overrides) if isinstance(overrides, str) else overrides
    return validate(_merge(tree, extra))


def _yaml_value(raw: str) -> Any:
    """An override's value typed as YAML types it (``3`` int, ``0.1`` float, ``true``, text);
    ``nan``/``inf``/``-inf`` are floats, as in TOML, so that they are refused as numbers."""
    import yaml  # only the Python override syntax needs it (the GPU check runs without it)

    if raw.strip().lower() in ("nan", "inf", "+inf", "-inf"):
        return float(raw)
    return yaml.safe_load(raw) if raw != "" else ""


def read_experiment(experiment: str | Path, base_dir: str | Path = ".") -> dict[str, Any]:
    """An experiment TOML file as a nested dict (tables or dotted keys, as Flower reads it)."""
    path = Path(experiment)
    path = path if path.is_absolute() else Path(base_dir) / path
    if not path.is_file():
        raise ConfigError(f"experiment file {path} does not exist (see configs/ for examples)")
    try:
        return nest(flatten(tomllib.loads(path.read_text())))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"experiment file {path} is not valid TOML: {e}") from e


def validate(tree: dict[str, Any]) -> ExperimentConfig:
    """Build and check an :class:`ExperimentConfig`; raise one error listing all problems
    (unknown keys and wrong types, then the values of every well-typed key)."""
    errors: list[str] = []
    cfg: ExperimentConfig = build(ExperimentConfig, tree, "", errors)

    def need(ok: bool, msg: str) -> None:
        if not ok:
            errors.append(msg)

    p, d = cfg.partition, cfg.data
    need(
        cfg.algorithm in ALGORITHMS,
        f"algorithm: {cfg.algorithm!r} is not one of {tuple(ALGORITHMS)}",
    )
    need(cfg.rounds >= 1, f"rounds: must be >= 1, got {cfg.rounds}")
    need(d.dataset in DATASETS, f"data.dataset: {d.dataset!r} not in {DATASETS}")
    need(
        d.dataset != "npz" or bool(d.path and d.test_path),
        "data.path and data.test_path: both .npz files are required for dataset 'npz'",
    )
    need(
        d.dataset in BUILTIN or bool(d.path),
        f"data.path: dataset {d.dataset!r} is read from a local root (nothing downloads); "
        "set data.path to it",
    )
    wants_tv = [
        key
        for key, on in (
            ("data.dataset", d.dataset not in BUILTIN),
            ("model.name", cfg.model.name == "resnet18"),
            ("train.augment", cfg.train.augment != "none"),
        )
        if on
    ]
    need(
        not wants_tv or vision.available(),
        f"{', '.join(wants_tv)}: torchvision does not import here; {vision.SETUP_HINT}",
    )
    for key in ("train_subset", "test_subset"):
        v = getattr(d, key)
        need(v >= 0, f"data.{key}: must be >= 1, or 0 for the whole split, got {v}")
    need(p.name in PARTITIONERS, f"partition.name: {p.name!r} not in {tuple(PARTITIONERS)}")
    need(
        p.num_partitions >= 0,
        f"partition.num_partitions: must be >= 1, or 0 to follow the federation, got "
        f"{p.num_partitions}",
    )
    need(p.partition_by == "label", "partition.partition_by: only 'label' is supported")
    need(
        not p.self_balancing or p.name == "dirichlet",
        "partition.self_balancing: only for partition.name='dirichlet'",
    )
    need(p.alpha > 0, f"partition.alpha: must be > 0, got {p.alpha}")
    need(p.min_partition_size >= 0, "partition.min_partition_size: must be >= 0")
    need(p.num_classes_per_partition >= 1, "partition.num_classes_per_partition: must be >= 1")
    need(p.num_shards_per_partition >= 1, "partition.num_shards_per_partition: must be >= 1")
    need(p.client_test_size >= 1, "partition.client_test_size: must be >= 1")
    need(cfg.model.name in MODELS, f"model.name: {cfg.model.name!r} not in {tuple(MODELS)}")
    errors += cfg.train.problems("train.") + cfg.fedprox.problems("fedprox.")
    errors += cfg.zdac.problems("zdac.") + cfg.zdas.problems("zdas.")
    s = cfg.server
    for side in ("train", "evaluate"):
        f, m = getattr(s, f"fraction_{side}"), getattr(s, f"min_{side}_nodes")
        need(0 < f <= 1, f"server.fraction_{side}: must be in (0, 1], got {f}")
        need(m >= 0, f"server.min_{side}_nodes: must be >= 1, or 0 (see fraction_{side}), got {m}")
    sim = cfg.simulation
    need(sim.client_cpus >= 1, f"simulation.client_cpus: must be >= 1, got {sim.client_cpus}")
    need(
        sim.client_gpus >= 0 or sim.client_gpus == -1,
        f"simulation.client_gpus: must be >= 0, or -1 for automatic, got {sim.client_gpus}",
    )
    need(s.evaluate_every >= 1, f"server.evaluate_every: must be >= 1, got {s.evaluate_every}")
    bad = [k for k in cfg.faults.bad_update_kinds.split(",") if k not in BAD_UPDATE_KINDS]
    need(not bad, f"faults.bad_update_kinds: {bad} not in {BAD_UPDATE_KINDS}")
    need(cfg.server.round_timeout > 0, "server.round_timeout: must be > 0 seconds")
    if s.secure_aggregation and cfg.algorithm in ALGORITHMS:
        need(
            all(c.averages_only for c in ALGORITHMS[cfg.algorithm]),
            f"server.secure_aggregation: {cfg.algorithm!r} needs each client's model (or "
            "control variate) on the server; use fedavg, fedprox or zdac, or set it false",
        )
        need(
            cfg.zdac.pool != "server",
            "zdac.pool: 'server' sends a bank that SecAgg+ messages cannot carry; use 'auto' "
            "or 'client' under server.secure_aggregation",
        )
        need(not cfg.resume, "resume: not supported under server.secure_aggregation")
    need(cfg.server.connect_timeout > 0, "server.connect_timeout: must be > 0 seconds")
    if errors:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(errors))
    return cfg


def config_from_run_config(run_config: dict[str, Any]) -> ExperimentConfig:
    """Build the experiment from Flower's run config (flat dotted keys)."""
    known = set(flatten(ExperimentConfig()))
    unknown = sorted(set(run_config) - known)
    if unknown:
        raise ConfigError(
            f"unknown run-config keys {unknown}; the known keys are those of "
            "[tool.flwr.app.config] in pyproject.toml"
        )
    return validate(nest(dict(run_config)))


@lru_cache(maxsize=8)
def _cached(items: tuple[tuple[str, Any], ...]) -> ExperimentConfig:
    return config_from_run_config(dict(items))


def experiment_config(run_config: dict[str, Any]) -> ExperimentConfig:
    """:func:`config_from_run_config`, once per process for a given run config."""
    return _cached(tuple(sorted(run_config.items())))


def pyproject_table(cfg: ExperimentConfig | None = None) -> str:
    """``[tool.flwr.app.config]`` for pyproject.toml: every key with its default."""
    lines: list[str] = []

    def emit(table: str, obj: Any) -> None:
        items = dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj
        lines.append(f"\n[{table}]")
        subs = {k: v for k, v in items.items() if isinstance(v, dict)}
        for k, v in items.items():
            if k not in subs:
                lines.append(f"{k} = {_toml_value(v)}")
        for k, v in subs.items():
            emit(f"{table}.{k}", v)

    emit("tool.flwr.app.config", cfg or ExperimentConfig())
    return "\n".join(lines).lstrip("\n") + "\n"


def to_toml(flat: dict[str, Any]) -> str:
    """Flat dotted keys as a TOML document Flower reads with ``--run-config file.toml``."""
    return "".join(f"{k} = {_toml_value(v)}\n" for k, v in flat.items())


def run_config_file(
    experiment: str | Path | None, overrides: str, base_dir: str | Path
) -> tuple[str, ExperimentConfig]:
    """One TOML run config: the experiment file's keys, then ``overrides`` (which win);
    returned with the experiment it makes, validated as the app will validate it."""
    tree = read_experiment(experiment, base_dir) if experiment else {}
    tree = _merge(tree, parse_overrides(overrides))
    return to_toml(flatten(tree)), validate(tree)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(v)


def write_pyproject(path: Path) -> None:
    """Replace ``[tool.flwr.app.config]`` and its sub-tables in ``path`` with the schema's."""
    text = path.read_text()
    start = text.index("[tool.flwr.app.config]")
    end = text.find("\n\n", text.rfind("[tool.flwr.app.config"))  # the last table's end
    end = len(text) if end < 0 else end + 2
    path.write_text(text[:start] + pyproject_table() + "\n" + text[end:])


if __name__ == "__main__":  # `python -m fedcore.config [--write]`: print or update the table
    if sys.argv[1:] == ["--write"]:
        write_pyproject(Path("pyproject.toml"))
    else:
        sys.stdout.write(pyproject_table())
