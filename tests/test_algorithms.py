"""The algorithm registry, the client hooks a message asks for, the wire protocol, and the
Flower-native run configuration, without running Flower."""

import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from fedcore.algorithms import ALGORITHMS, Algorithm, build_algorithm, client_hooks, resolve
from fedcore.algorithms.base import ClientRound, Composite, LocalPlan
from fedcore.algorithms.fedlc import CalibrationHook
from fedcore.algorithms.fedprox import ProximalHook
from fedcore.algorithms.scaffold import CLIENT_VARIATE, ScaffoldHook
from fedcore.algorithms.zdac import ZdacConfig, ZdacHook
from fedcore.algorithms.zdas import ZdasHook
from fedcore.config import ConfigError, ExperimentConfig, config_from_run_config, load_config
from fedcore.data import DataSpec
from fedcore.losses import LocalData
from fedcore.models import build_model
from fedcore.protocol import (
    LABEL_COUNTS,
    SCAFFOLD_C,
    SCAFFOLD_DC,
    decode_train_reply,
    encode_train_reply,
)
from fedcore.schema import flatten
from fedcore.training import Samples, Source, TrainConfig, TrainStats

ROOT = Path(__file__).resolve().parent.parent
SPEC = DataSpec((1, 28, 28), (0.5,), (0.25,), tuple("abcdefghij"))


def _build(overrides: str) -> Algorithm:
    cfg = load_config(None, overrides).with_clients(4)
    model = build_model("cnn", 1, 10)
    names = tuple(n for n, _ in model.named_parameters())
    return build_algorithm(
        cfg.algorithm, cfg.sections(), cfg.run_context, spec=SPEC,
        make_model=lambda: build_model("cnn", 1, 10), device=torch.device("cpu"),
        param_names=names,
    )  # fmt: skip


def _hooks_for(overrides: str) -> list[type]:
    """The client hooks that a train message of this algorithm switches on."""
    algo = _build(overrides)
    state = build_model("cnn", 1, 10).state_dict()
    arrays = algo.train_arrays(algo.init(state), 1)
    return [type(h) for h in client_hooks(algo.train_config(1), arrays)]


def test_each_algorithm_asks_clients_for_exactly_its_hooks():
    assert _hooks_for("algorithm=fedavg") == []
    assert _hooks_for("algorithm=fedprox fedprox.mu=0.1") == [ProximalHook]
    assert _hooks_for("algorithm=scaffold") == [ScaffoldHook]
    assert _hooks_for("algorithm=zdac") == [ZdacHook]
    assert _hooks_for("algorithm=zdas") == []  # label counts stay private unless asked for
    assert _hooks_for("algorithm=zdas zdas.share_label_counts=true") == [ZdasHook]
    assert _hooks_for("algorithm=zda zdas.share_label_counts=true") == [ZdacHook, ZdasHook]
    assert _hooks_for("algorithm=fedlc") == [CalibrationHook]
    assert _hooks_for("algorithm=zda+fedprox") == [ProximalHook, ZdacHook]
    assert _hooks_for("algorithm=zda+fedlc") == [CalibrationHook, ZdacHook]
    assert _hooks_for("algorithm=scaffold+fedprox+fedlc") == [
        ProximalHook, ScaffoldHook, CalibrationHook
    ]  # fmt: skip


def test_zda_is_the_composition_of_zdac_and_zdas():
    assert ALGORITHMS["zda"] == ALGORITHMS["zdac"] + ALGORITHMS["zdas"]
    assert resolve("zda") == resolve("zdac+zdas") == resolve("zda+zdas")
    algo = _build("algorithm=zda")
    assert isinstance(algo, Composite) and [p.name for p in algo.parts] == ["zdac", "zdas"]
    state = build_model("cnn", 1, 10).state_dict()
    assert set(algo.init(state)) == {"zdac", "zdas"}
    with pytest.raises(ConfigError, match="fedprox.mu: FedProx needs mu > 0"):
        _build("algorithm=fedprox fedprox.mu=0")


def test_composition_by_name_and_its_checks():
    algo = _build("algorithm=zdas+scaffold")
    state = build_model("cnn", 1, 10).state_dict()
    assert algo.name == "zdas+scaffold" and set(algo.init(state)) == {"zdas", "scaffold"}
    with pytest.raises(ConfigError, match=r"'fedsgd' in 'zda\+fedsgd' is not one of"):
        load_config(None, "algorithm=zda+fedsgd")
    with pytest.raises(ConfigError, match="needs each client's model"):
        load_config(None, "algorithm=zdac+scaffold server.secure_aggregation=true")
    load_config(None, "algorithm=zdac+fedprox+fedlc server.secure_aggregation=true")
    # a part that replaces the average runs first: ZDAS then fine-tunes the q-FFL model
    assert [c.name for c in resolve("zda+qfedavg")] == ["qfedavg", "zdac", "zdas"]
    with pytest.raises(ConfigError, match=r"fedprox.mu: FedProx needs mu > 0"):
        load_config(None, "algorithm=zda+fedprox fedprox.mu=0")
    load_config(None, "algorithm=zda fedprox.mu=0")  # FedProx not in the algorithm
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(None, "fedprox.compose_with_zda=true")  # composition is by name now


def test_zdac_settings_survive_the_wire():
    cfg = ZdacConfig(budget=7.0, allocation="uniform")
    flat = flatten(cfg, "zdac.")
    assert flat["zdac.inversion.steps"] == cfg.inversion.steps
    (hook,) = client_hooks(flat, {})
    assert isinstance(hook, ZdacHook) and hook.cfg == cfg


def test_scaffold_client_hook_keeps_its_variate_and_sends_the_change():
    model = build_model("cnn", 1, 10)
    c = {n: torch.full_like(p, 0.1) for n, p in model.named_parameters()}
    rnd = ClientRound(
        1, 0, 0, np.ones(10), SPEC, TrainConfig(), model, {SCAFFOLD_C: c}, {},
        torch.device("cpu"),
    )  # fmt: skip
    (hook,) = client_hooks({}, rnd.arrays)
    plan = LocalPlan(LocalData({"own": Source(Samples(torch.zeros(1), torch.zeros(1)))}, 1))
    hook.before(rnd, plan)
    corr = plan.grad_correction()
    assert corr is not None and len(corr) == len(c)
    assert torch.allclose(corr[0], torch.full_like(corr[0], 0.1))
    hook.after(rnd, TrainStats(10, 5, 0.0, 0.0), plan)
    assert set(plan.arrays) == {SCAFFOLD_DC} and CLIENT_VARIATE in rnd.state
    # the model did not move: c_i+ = c_i - c = -c, delta = -c
    assert torch.allclose(next(iter(plan.arrays[SCAFFOLD_DC].values())), -0.1 * torch.ones(1))


def test_train_reply_round_trip_and_refusals():
    state = build_model("cnn", 1, 10).state_dict()
    x, y = torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    content = encode_train_reply(state, 12, 3, {"loss": 0.5, LABEL_COUNTS: [1, 2]}, {}, (x, y))
    reply = decode_train_reply(content, state, {}, 100)
    assert (reply.partition_id, reply.num_examples) == (3, 12)
    assert reply.label_counts.tolist() == [1, 2] and reply.metrics["loss"] == 0.5
    assert torch.equal(reply.preview[0], x) and torch.equal(reply.preview[1], y)
    assert all(torch.equal(reply.state[k], v) for k, v in state.items())
    assert "expected ArrayRecords" in decode_train_reply(content, state, {"scaffold-dc": {}}, 100)
    assert "absurd" in decode_train_reply(content, state, {}, 10)


def test_pyproject_declares_every_key_with_its_default():
    """One source of defaults: the schema; Flower's run config lists the same keys and values."""
    table = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    assert flatten(table) == flatten(ExperimentConfig())
    assert config_from_run_config(flatten(table)) == ExperimentConfig()


def test_federation_size_comes_from_the_nodes_and_is_checked():
    cfg = load_config(None, "")
    assert cfg.partition.num_partitions == 0 and cfg.with_clients(7).num_clients == 7
    with pytest.raises(ConfigError, match="num-supernodes=3"):
        load_config(None, "partition.num_partitions=3").with_clients(5)
    with pytest.raises(ConfigError, match=r"server.min_train_nodes: must be in 0..2"):
        load_config(None, "server.min_train_nodes=3").with_clients(2)


def test_qffl_update_is_the_average_at_q0_and_favours_high_loss_clients():
    from fedcore.algorithms.qfedavg import qffl_update

    g = {"w": torch.zeros(2)}
    clients = [{"w": torch.tensor([1.0, 0.0])}, {"w": torch.tensor([0.0, 1.0])}]
    avg = qffl_update(g, clients, [1.0, 1.0], [0.1, 0.1], ["w"], q=0.0)
    assert torch.allclose(avg["w"], torch.tensor([0.5, 0.5]))
    uneven = qffl_update(g, clients, [1.0, 1.0], [0.1, 10.0], ["w"], q=0.0)  # K differs
    assert torch.allclose(uneven["w"], avg["w"])  # still the plain mean at q = 0
    fair = qffl_update(g, clients, [0.5, 2.0], [0.1, 0.1], ["w"], q=2.0)["w"]
    assert fair[1] > 4 * fair[0] > 0  # the high-loss client pulls harder
