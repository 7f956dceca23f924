"""The experiment's schema: typed, frozen dataclasses whose defaults are the default
experiment and the one source of defaults.

Every algorithm's settings are its own section, taken from the registry
(:data:`fedcore.algorithms.SECTIONS`): :data:`ExperimentConfig` is :class:`ExperimentBase`
with those sections added, so a new algorithm's section needs no line here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fedcore.algorithms import SECTIONS, RunContext
from fedcore.attacks import AttackConfig
from fedcore.faults import BAD_UPDATE_KINDS
from fedcore.partition import PARTITIONERS
from fedcore.sampling import Sampling
from fedcore.training import TrainConfig


class ConfigError(ValueError):
    """The experiment configuration is invalid; the message names every problem."""

    @classmethod
    def listing(cls, problems: list[str]) -> ConfigError:
        """One error whose message lists every problem, one per line."""
        return cls("invalid configuration:\n  - " + "\n  - ".join(problems))


PARTITION_MAPS = ("auto", "query", "assign")
# Keys added to the run config after results and checkpoints were saved, with the value
# that runs exactly as before they existed: a checkpoint without such a key resumes at that
# value, and a benchmark stamp leaves the key out at it (`benchmarks/harness.py`).
ADDED_OFF: dict[str, Any] = {"zdas.guard": False}


def failing(prefix: str, checks: list[tuple[bool, str]]) -> list[str]:
    """The messages of the checks that fail, each as ``prefix + message``."""
    return [prefix + msg for ok, msg in checks if not ok]


@dataclass(frozen=True)
class DataConfig:
    """Which dataset to read, from where, and optional random subsets for quick runs."""

    dataset: str = "fashion-mnist"  # fedcore.datasets.DATASETS; "sites": each node's own files
    path: str = ""  # local root, IDX dir or train .npz; "": fashion-mnist's Debian IDX dir
    test_path: str = ""  # the test .npz (dataset npz; sites: the server's optional test set)
    train_subset: int = 0  # a random subset of this size (0: the whole split)
    test_subset: int = 0  # a random test subset of this size (0: the whole split)
    # dataset "sites" only (docs/deployment.md): what the server may not read from data
    num_sites: int = 0  # sites to wait for before round 1 (server.connect_timeout at most)
    input_shape: str = ""  # "C,H,W"; "": the shape most sites hold
    num_classes: int = 0  # 0: the sites' largest label + 1
    mean: str = ""  # per-channel pixel mean in [0, 1], "m1,m2,..."; "": from the sites' sums
    std: str = ""  # per-channel pixel std, with mean; "": from the sites' sums


@dataclass(frozen=True)
class PartitionConfig:
    """How the training split is spread over clients (flwr-datasets argument names)."""

    name: str = "dirichlet"  # iid, dirichlet, pathological, shards or quantity
    num_partitions: int = 0  # 0: one partition per SuperNode (the federation's num-partitions)
    partition_by: str = "label"  # only "label" is supported
    alpha: float = 0.1  # Dirichlet concentration (dirichlet, quantity); smaller: more skew
    min_partition_size: int = 10  # dirichlet, quantity: fewest samples per partition
    self_balancing: bool = False  # dirichlet: no more samples for partitions above average
    num_classes_per_partition: int = 2  # pathological: classes each partition holds
    num_shards_per_partition: int = 2  # shards: label-sorted shards dealt to each partition
    seed: int = -1  # -1: the experiment seed
    client_test_size: int = 1000  # size of each client's test set, drawn with its label mix

    def problems(self, prefix: str) -> list[str]:
        checks = [
            (self.name in PARTITIONERS, f"name: {self.name!r} not in {tuple(PARTITIONERS)}"),
            (
                self.num_partitions >= 0,
                "num_partitions: must be >= 1, or 0 to follow the federation, got "
                f"{self.num_partitions}",
            ),
            (self.partition_by == "label", "partition_by: only 'label' is supported"),
            (
                not self.self_balancing or self.name == "dirichlet",
                f"self_balancing: only for {prefix}name='dirichlet'",
            ),
            (self.alpha > 0, f"alpha: must be > 0, got {self.alpha}"),
            (self.min_partition_size >= 0, "min_partition_size: must be >= 0"),
            (self.num_classes_per_partition >= 1, "num_classes_per_partition: must be >= 1"),
            (self.num_shards_per_partition >= 1, "num_shards_per_partition: must be >= 1"),
            (self.client_test_size >= 1, "client_test_size: must be >= 1"),
        ]
        return failing(prefix, checks)


@dataclass(frozen=True)
class ModelConfig:
    """Model architecture by name."""

    name: str = "cnn"  # cnn (1x28x28), resnet (3x32x32), resnet18, or "package.module:factory"


@dataclass(frozen=True)
class ServerConfig:
    """Round orchestration: which clients train and which are evaluated, seeded per round.

    A round samples ``max(floor(fraction_train * N), min_train_nodes)`` of the N clients
    and needs ``min_train_nodes`` usable replies (0: every sampled client). Federated
    evaluation runs every ``evaluate_every`` rounds on a sample sized the same way, and on
    every client in the last round (a seeded ``final_evaluate`` of them in a larger
    federation); the central test set is scored every round.
    """

    fraction_train: float = 1.0  # share of the clients sampled to train, in (0, 1]
    min_train_nodes: int = 0  # sample at least this many; replies needed (0: all sampled)
    fraction_evaluate: float = 1.0  # share of the clients evaluated, in (0, 1]
    min_evaluate_nodes: int = 0  # evaluate at least this many clients (0: fraction alone)
    evaluate_every: int = 1  # federated evaluation every this many rounds, and the last
    round_timeout: float = 3600.0  # seconds to wait for a round's train (then evaluate) replies
    secure_aggregation: bool = False  # SecAgg+ (fedavg, fedprox, fedlc, zdac): docs/deployment.md
    final_evaluate: int = 1000  # the last round evaluates all clients, or this many (0: all)
    connect_timeout: float = 300.0  # seconds to wait for all SuperNodes to connect
    partition_map: str = "auto"  # query | assign | auto (assign under simulation): docs/running.md

    def problems(self, prefix: str) -> list[str]:
        checks = []
        for side in ("train", "evaluate"):
            f, m = getattr(self, f"fraction_{side}"), getattr(self, f"min_{side}_nodes")
            checks += [
                (0 < f <= 1, f"fraction_{side}: must be in (0, 1], got {f}"),
                (m >= 0, f"min_{side}_nodes: must be >= 1, or 0 (see fraction_{side}), got {m}"),
            ]
        checks += [
            (self.evaluate_every >= 1, f"evaluate_every: must be >= 1, got {self.evaluate_every}"),
            (self.round_timeout > 0, "round_timeout: must be > 0 seconds"),
            (
                self.final_evaluate >= 0,
                f"final_evaluate: must be >= 0 (0: every client), got {self.final_evaluate}",
            ),
            (self.connect_timeout > 0, "connect_timeout: must be > 0 seconds"),
            (
                self.partition_map in PARTITION_MAPS,
                f"partition_map: {self.partition_map!r} is not one of {PARTITION_MAPS}",
            ),
            (
                not (self.partition_map == "assign" and self.secure_aggregation),
                "partition_map: 'assign' cannot be used under server.secure_aggregation "
                "(SecAgg+ trains each node's own partition); use 'auto' or 'query'",
            ),
        ]
        return failing(prefix, checks)


@dataclass(frozen=True)
class SimulationConfig:
    """Resources of each simulated ClientApp, passed to Flower's simulation engine as
    ``--federation-config client-resources-num-cpus/-num-gpus`` by ``scripts/run.sh`` (and
    ``scripts/simulate.py``); a plain ``flwr run .`` takes them from its own flags."""

    client_cpus: int = 1  # CPUs per simulated ClientApp (benchmarks.studies.client_cpus)
    client_gpus: float = -1.0  # share of a GPU per ClientApp; -1: 0.25 with CUDA, else 0

    def problems(self, prefix: str) -> list[str]:
        checks = [
            (self.client_cpus >= 1, f"client_cpus: must be >= 1, got {self.client_cpus}"),
            (
                self.client_gpus >= 0 or self.client_gpus == -1,
                f"client_gpus: must be >= 0, or -1 for automatic, got {self.client_gpus}",
            ),
        ]
        return failing(prefix, checks)

    def gpus(self, cuda: bool) -> float:
        """The GPU share to request, resolving the automatic -1."""
        return self.client_gpus if self.client_gpus >= 0 else (0.25 if cuda else 0.0)


@dataclass(frozen=True)
class FaultsConfig:
    """Fault injection for tests: one client sends a corrupt update every round."""

    bad_update_partition: int = -1  # this partition sends a corrupt update (-1: none)
    bad_update_kinds: str = "nan"  # comma-separated fedcore.faults kinds, one per round in turn
    stop_after_round: int = 0  # end the ServerApp after this round (a simulated crash; 0: off)
    hang_partition: int = -1  # this partition never replies to a train message (-1: none)

    def problems(self, prefix: str) -> list[str]:
        bad = [k for k in self.bad_update_kinds.split(",") if k not in BAD_UPDATE_KINDS]
        return failing(prefix, [(not bad, f"bad_update_kinds: {bad} not in {BAD_UPDATE_KINDS}")])


@dataclass(frozen=True)
class OutputConfig:
    """Where the run directory goes: ``dir`` exactly, else a new one under ``root``."""

    root: str = "runs"  # parent of new run directories (<stamp>-<name>-<algorithm>)
    dir: str = ""  # this exact run directory (must be empty); "": a new one under root
    leakage: bool = False  # ZDAS: how close synthetic samples come to each client's images


@dataclass(frozen=True)
class ExperimentBase:
    """One federated experiment, less the algorithms' sections (:data:`ExperimentConfig`)."""

    name: str = "fmnist-dir0.1"  # part of the run directory's name
    seed: int = 0  # seeds the initial model, subsets, partitions, sampling and training
    rounds: int = 20  # federated rounds to run
    algorithm: str = "fedavg"  # or several joined with +: zdas+scaffold (docs/architecture.md)
    data: DataConfig = field(default_factory=DataConfig)
    partition: PartitionConfig = field(default_factory=PartitionConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    simulation: SimulationConfig = field(default_factory=SimulationConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    faults: FaultsConfig = field(default_factory=FaultsConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    resume: str = ""  # a run directory to continue from its last checkpoint

    @property
    def partition_seed(self) -> int:
        return self.seed if self.partition.seed < 0 else self.partition.seed

    @property
    def num_clients(self) -> int:
        """The number of clients (known once :meth:`with_clients` has been applied)."""
        return self.partition.num_partitions

    def with_clients(self, n: int) -> ExperimentBase:
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

    def section(self, name: str) -> Any:
        """An algorithm's config section (``zdac``, ``fedprox``, ...)."""
        return getattr(self, name)

    def sections(self) -> dict[str, Any]:
        """Every algorithm's config section by name."""
        return {name: getattr(self, name) for name in SECTIONS}

    @property
    def run_context(self) -> RunContext:
        """What the algorithms may know of this run (after :meth:`with_clients`)."""
        s, n = self.server, self.num_clients
        sampled = Sampling(s.fraction_train, s.min_train_nodes).size(n) < n
        return RunContext(self.seed, n, sampled, s.secure_aggregation)


if TYPE_CHECKING:  # type checkers see the base; algorithms' sections via ``section(name)``
    ExperimentConfig = ExperimentBase
else:  # one federated experiment: the base plus one field per algorithm section
    ExperimentConfig = dataclasses.make_dataclass(
        "ExperimentConfig",
        [(name, cls, field(default_factory=cls)) for name, cls in SECTIONS.items()],
        bases=(ExperimentBase,),
        frozen=True,
        namespace={"__module__": __name__},
    )
