"""Your own model by ``"package.module:factory"`` (examples/own_model.py): every algorithm runs
on it; a model without BatchNorm stops ZDAC/ZDAS with one configuration error unless their
inversion's BatchNorm weight is set to 0."""

import pytest
import torch

from fedcore.config import ConfigError, load_config
from fedcore.federation import build_federation
from fedcore.models import build_model
from fedcore.round import build_server, run_round
from fedcore.training import evaluate
from tests.conftest import flwr_run

SMALL = (
    "data.train_subset=1200 data.test_subset=300 partition.client_test_size=50 "
    "partition.alpha=1.0 zdac.start_round=1 zdac.inversion.steps=5 zdas.inversion.steps=5 "
    "zdas.samples_per_client=10"
)


def _rounds(overrides: str, rounds: int = 2) -> float:
    cfg = load_config(None, f"{SMALL} {overrides}").with_clients(3)
    fed = build_federation(cfg)
    model, algo = build_server(cfg, fed.train.spec, torch.device("cpu"))
    state, client_states = model.state_dict(), {}
    algo_state = algo.init(state)
    for rnd in range(1, rounds + 1):
        algo_state, step, _ = run_round(
            cfg, algo, algo_state, fed, state, rnd, [0, 1, 2], client_states, "cpu"
        )
        state = step.state
    model.load_state_dict(state)
    return float(evaluate(model, fed.test)["accuracy"])


def test_a_factory_by_import_path_builds_the_model():
    model = build_model("examples.own_model:small_cnn", 1, 7)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 7)
    for bad, why in (
        ("examples.own_model:nothing", "cannot import 'nothing'"),
        ("no_such_module:f", "cannot import 'f'"),
        ("vgg", "neither a built-in model"),
    ):
        with pytest.raises(ConfigError, match=why):
            load_config(None, f"model.name={bad}")


def test_every_algorithm_runs_on_an_own_model_with_batchnorm():
    assert _rounds("model.name=examples.own_model:small_cnn algorithm=zda+fedprox") > 0.2


def test_without_batchnorm_inversion_must_be_asked_for_explicitly():
    mlp = "model.name=examples.own_model:mlp"
    assert _rounds(f"{mlp} algorithm=scaffold") > 0.2  # the FedAvg family runs as usual
    with pytest.raises(ConfigError, match=r"no BatchNorm layer .* zdas.inversion.bn=0"):
        _rounds(f"{mlp} algorithm=zdas")
    assert _rounds(f"{mlp} algorithm=zda zdac.inversion.bn=0 zdas.inversion.bn=0") > 0.2


@pytest.mark.slow(seconds=55)
def test_own_model_through_flower(tmp_path):
    run = flwr_run(
        tmp_path,
        "rounds=2 algorithm=zda model.name=examples.own_model:small_cnn data.train_subset=1500 "
        "data.test_subset=300 partition.client_test_size=50 zdac.inversion.steps=10 "
        "zdas.inversion.steps=10 zdas.samples_per_client=10 zdac.start_round=1",
        num_supernodes=2,
    )
    assert "examples.own_model:small_cnn" in (run / "config.yaml").read_text()
    assert (run / "model_final.pt").is_file()
