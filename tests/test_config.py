import tomllib
from pathlib import Path

import pytest

from fedcore import vision
from fedcore.algorithms.zdas import ZdasConfig
from fedcore.config import ConfigError, config_from_run_config, load_config, parse_overrides
from fedcore.datasets import BUILTIN
from fedcore.federation import build_federation
from fedcore.partition import PartitionError
from fedcore.schema import from_flat

ROOT = Path(__file__).resolve().parent.parent


def test_default_experiment_matches_the_issue():
    # 10 clients come from the federation (scripts/run.sh's default, tests/test_run_script.py)
    cfg = load_config("configs/default.toml", base_dir=ROOT)
    assert cfg.partition.num_partitions == 0
    cfg = cfg.with_clients(10)
    assert cfg.data.dataset == "fashion-mnist" and cfg.partition.num_partitions == 10
    assert cfg.partition.name == "dirichlet" and cfg.partition.alpha == 0.1
    assert cfg.model.name == "cnn" and cfg.train.local_epochs == 1
    assert (cfg.train.batch_size, cfg.train.lr, cfg.train.momentum) == (32, 0.01, 0.9)


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_experiment_validates(path):
    dataset = tomllib.loads(path.read_text()).get("data", {}).get("dataset", "fashion-mnist")
    if dataset not in BUILTIN and not vision.available():
        pytest.skip(f"{dataset} needs torchvision, which does not import here (CPU-only setup)")
    load_config(path)


def test_overrides_are_typed_and_nested():
    assert parse_overrides("rounds=3 train.lr=0.05 data.train_subset=null name=x") == {
        "rounds": 3,
        "train": {"lr": 0.05},
        "data": {"train_subset": None},
        "name": "x",
    }
    cfg = load_config("configs/default.toml", "rounds=3 algorithm=fedprox fedprox.mu=0.1", ROOT)
    assert (cfg.rounds, cfg.algorithm, cfg.fedprox.mu) == (3, "fedprox", 0.1)
    cfg = config_from_run_config({"train.lr": 1})
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)


def test_all_problems_reported_at_once_with_keys():
    with pytest.raises(ConfigError) as e:
        load_config(
            None,
            "rounds=0 algorithm=fedsgd train.lr=-1 partition.alpha=0 "
            "train.batch_size=abc partition.bogus=1 model.name=vgg",
        )
    msg = str(e.value)
    for needle in ("train.batch_size: expected int", "partition.bogus: unknown key"):
        assert needle in msg
    with pytest.raises(ConfigError) as e:
        load_config(None, "rounds=0 algorithm=fedsgd train.lr=-1 partition.alpha=0 model.name=vgg")
    msg = str(e.value)
    for needle in (
        "rounds: must be >= 1",
        "algorithm: 'fedsgd'",
        "train.lr: must be > 0",
        "partition.alpha: must be > 0",
        "model.name: 'vgg'",
    ):
        assert needle in msg


def test_bad_files_and_keys(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("rounds = [1,\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "bad.toml")
    with pytest.raises(ConfigError, match="dotted.key=value"):
        parse_overrides("rounds")
    with pytest.raises(ConfigError, match="unknown run-config keys"):
        config_from_run_config({"experiment": "", "lr": 1})


def test_impossible_partition_fails_before_training(tmp_path):
    (tmp_path / "c.toml").write_text(
        '[partition]\nname = "pathological"\nnum_classes_per_partition = 12\n'
    )
    cfg = load_config(tmp_path / "c.toml").with_clients(10)
    with pytest.raises(PartitionError, match="num_classes_per_partition must be in 1..10"):
        build_federation(cfg)


def test_zdas_round_window():
    cfg = load_config(None, "zdas.start_round=2 zdas.end_round=4")
    assert [r for r in range(1, 7) if cfg.zdas.active(r)] == [2, 3, 4]
    assert all(load_config(None, "").zdas.active(r) for r in range(1, 30))
    with pytest.raises(ConfigError, match=r"zdas.end_round: must be 0 \(no end\) or >= "):
        load_config(None, "zdas.start_round=3 zdas.end_round=2")


def test_a_partial_nested_section_keeps_its_parents_defaults():
    """``zdas.inversion`` given in part keeps ZDAS's own inversion defaults (2 warm steps),
    not InversionConfig's (5), and ZDAC's section keeps its own."""
    cfg = load_config(None, "zdas.inversion.lr=0.05")
    assert (cfg.zdas.inversion.lr, cfg.zdas.inversion.warm_steps) == (0.05, 2)
    assert cfg.zdac.inversion.warm_steps == 5 and cfg.zdas.samples_per_client == 50
    z = from_flat(ZdasConfig, {"zdas.inversion.steps": 7}, "zdas.")
    assert (z.inversion.steps, z.inversion.warm_steps) == (7, 2)


def test_configuration_reference_is_generated_from_the_schema():
    """docs/configuration.md lists every key with its default (regenerate:
    `python -m fedcore.runconfig --write`)."""
    from fedcore.experiment import ExperimentConfig
    from fedcore.runconfig import DOC, configuration_markdown
    from fedcore.schema import flatten

    text = DOC.read_text()
    assert text == configuration_markdown()
    assert all(f"| `{key}` |" in text for key in flatten(ExperimentConfig()))
