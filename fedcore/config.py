"""Experiment configuration: read from Flower's run config or files, validated once.

The schema and its defaults live in :mod:`fedcore.experiment`; ``[tool.flwr.app.config]``
in pyproject.toml lists every key with the same value (written by
``python -m fedcore.runconfig --write``, checked by a test), so Flower knows and checks every
key. Precedence, lowest first: these defaults, then an experiment TOML file
(``flwr run . --run-config configs/x.toml``) or inline keys
(``flwr run . --run-config "algorithm='zda' rounds=5"``); Flower takes one or the other,
``scripts/run.sh`` merges a file and inline keys (inline wins). Every problem is reported
at once, with its key and the fix.
"""

from __future__ import annotations

import shlex
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any

from fedcore import vision
from fedcore.algorithms import algorithm_problems
from fedcore.datasets import BUILTIN, DATASETS
from fedcore.experiment import ConfigError, ExperimentConfig
from fedcore.models import model_problems
from fedcore.schema import build, flatten, merge, nest
from fedcore.sitespec import parse_floats, parse_shape

__all__ = ["ConfigError", "ExperimentConfig", "experiment_config", "load_config", "validate"]


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


# the sections that check themselves (``problems(prefix)``), besides the algorithms'
SECTION_CHECKS = ("partition", "train", "server", "simulation", "faults", "attack")


def load_config(
    experiment: str | Path | None = None,
    overrides: str | dict[str, Any] = "",
    base_dir: str | Path = ".",
) -> ExperimentConfig:
    """Read an experiment TOML (relative to ``base_dir``), apply overrides, validate."""
    tree = read_experiment(experiment, base_dir) if experiment else {}
    extra = parse_overrides(overrides) if isinstance(overrides, str) else overrides
    return validate(merge(tree, extra))


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
    if cfg.rounds < 1:
        errors.append(f"rounds: must be >= 1, got {cfg.rounds}")
    errors += data_problems(cfg)
    errors += model_problems(cfg.model.name)
    for name in SECTION_CHECKS:
        errors += getattr(cfg, name).problems(f"{name}.")
    for name, section in cfg.sections().items():
        errors += section.problems(f"{name}.")
    errors += algorithm_problems(cfg.algorithm, cfg.sections(), cfg.run_context)
    if cfg.server.secure_aggregation and cfg.resume:
        errors.append("resume: not supported under server.secure_aggregation")
    if errors:
        raise ConfigError.listing(errors)
    return cfg


def data_problems(cfg: ExperimentConfig) -> list[str]:
    """The ``data`` section's problems, with the rules it shares with the model and training
    (torchvision for what needs it) and a federation of sites'."""
    errors: list[str] = []

    def need(ok: bool, msg: str) -> None:
        if not ok:
            errors.append(msg)

    d = cfg.data
    need(d.dataset in DATASETS, f"data.dataset: {d.dataset!r} not in {DATASETS}")
    need(
        d.dataset != "npz" or bool(d.path and d.test_path),
        "data.path and data.test_path: both .npz files are required for dataset 'npz'",
    )
    errors += site_problems(cfg)
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
    return errors


def site_problems(cfg: ExperimentConfig) -> list[str]:
    """The ``data`` keys of a federation of sites (``data.dataset = "sites"``), and that they
    are left alone otherwise."""
    d, out = cfg.data, []
    site_keys = {"num_sites": 0, "input_shape": "", "num_classes": 0, "mean": "", "std": ""}
    if d.dataset != "sites":
        return [f"data.{k}: only for data.dataset='sites'" for k, v in site_keys.items()
                if getattr(d, k) != v]  # fmt: skip
    if d.num_sites < 1:
        out.append("data.num_sites: the number of sites to wait for, >= 1")
    try:
        shape, mean, std = parse_shape(d.input_shape), parse_floats(d.mean), parse_floats(d.std)
    except ValueError:
        return [*out, "data.input_shape, data.mean, data.std: comma-separated numbers, e.g. "
                "input_shape='1,28,28' mean='0.286' std='0.353'"]  # fmt: skip
    if shape and (len(shape) != 3 or min(shape) < 1):
        out.append(f"data.input_shape: 'C,H,W' with positive sizes, got {d.input_shape!r}")
    if len(mean) != len(std) or any(s <= 0 for s in std):
        out.append("data.mean, data.std: give both, one value per channel, std > 0")
    if shape and mean and len(mean) != shape[0]:
        out.append(f"data.mean: {len(mean)} values for {shape[0]} channels (data.input_shape)")
    if d.num_classes < 0:
        out.append("data.num_classes: >= 1, or 0 to take the sites' largest label + 1")
    if d.path:
        out.append("data.path: the server reads no training data of sites; remove it")
    if cfg.server.secure_aggregation:
        out.append("server.secure_aggregation: not yet with data.dataset='sites'")
    if cfg.output.leakage:
        out.append("output.leakage: needs every client's images at the server (simulation)")
    return out


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
