"""The core round loop (no Flower): ZDA under client sampling keeps its warm starts in
class-keyed banks on the server and nothing on the clients."""

import torch

from fedcore.algorithms.zdac import OWN_BANK_KEY
from fedcore.config import load_config
from fedcore.federation import build_federation
from fedcore.round import build_server, run_round, run_rounds
from fedcore.sampling import TRAIN, Sampling, sample_partitions
from fedcore.training import evaluate

SMALL = (
    "algorithm=zda data.train_subset=1500 data.test_subset=300 partition.client_test_size=50 "
    "partition.alpha=0.5 zdac.start_round=1 zdac.budget=0.2 zdac.inversion.steps=10 "
    "zdac.inversion.warm_steps=2 zdac.bank_per_class=4 zdas.samples_per_client=20 "
    "zdas.inversion.steps=10 zdas.inversion.warm_steps=2 zdas.bank_per_class=8"
)


def _setup(overrides: str, clients: int):
    cfg = load_config(None, overrides).with_clients(clients)
    fed = build_federation(cfg)
    model, algo = build_server(cfg, fed.train.spec, torch.device("cpu"))
    return cfg, fed, model, algo


def test_zda_under_sampling_warm_starts_from_server_banks():
    cfg, fed, model, algo = _setup(SMALL + " server.fraction_train=0.5", clients=6)
    zdac, zdas = algo.parts
    assert zdac.banks and zdas.shared  # auto: sampling -> banks
    state, client_states, rows = model.state_dict(), {}, []
    algo_state = algo.init(state)
    for rnd in (1, 2, 3):
        parts = sample_partitions(range(6), Sampling(0.5), cfg.seed, rnd, TRAIN)
        algo_state, step, metrics = run_round(
            cfg, algo, algo_state, fed, state, rnd, parts, client_states, "cpu"
        )
        state = step.state
        rows.append(metrics)
    assert len(parts) == 3 and len(algo_state["zdac"]["bank"]["y"]) == 10 * 4
    # only the first model of round 1 starts from noise; the next draw from the bank it filled
    assert abs(rows[0]["zdas-warm-fraction"] - 2 / 3) < 1e-9
    assert rows[1]["zdas-warm-fraction"] == 1.0 == rows[2]["zdas-warm-fraction"]
    # the server inverts its bank from noise once; clients start from it from their first round
    assert rows[0]["zdac-bank-warm-fraction"] == 0.0 and rows[2]["zdac-bank-warm-fraction"] == 1.0
    assert all(0 < r["inv-warm-count"] <= r["syn-count"] for r in rows)
    assert not any(OWN_BANK_KEY in s for s in client_states.values())  # nothing kept per client
    shared = algo_state["zdas"]["shared"]  # one bank, the newest 8 samples of each class
    assert list(algo_state["zdas"]) == ["shared"] and int((shared["y"] == 0).sum()) <= 8
    model.load_state_dict(state)
    assert evaluate(model, fed.test)["accuracy"] > 0.2  # chance is 0.1


def test_full_participation_keeps_pools_per_client():
    cfg, fed, model, algo = _setup(SMALL, clients=3)
    zdac, zdas = algo.parts
    assert not zdac.banks and not zdas.shared
    state, client_states = model.state_dict(), {}
    algo_state = algo.init(state)
    for rnd in (1, 2):
        algo_state, step, metrics = run_round(
            cfg, algo, algo_state, fed, state, rnd, [0, 1, 2], client_states, "cpu"
        )
        state = step.state
    assert metrics["zdas-warm-fraction"] == 1.0
    assert sorted(algo_state["zdas"]["own"]) == [0, 1, 2]
    assert all(OWN_BANK_KEY in client_states[p] for p in (0, 1, 2))


def test_run_rounds_samples_by_config_and_loads_each_step():
    cfg = load_config(
        None,
        "algorithm=fedavg rounds=2 data.train_subset=600 data.test_subset=100 "
        "partition.client_test_size=20 server.fraction_train=0.5",
    ).with_clients(4)
    fed = build_federation(cfg)
    seen = []
    for r in run_rounds(cfg, fed, torch.device("cpu")):
        assert r.partitions == sample_partitions(
            range(4), Sampling(0.5), cfg.seed, r.server_round, TRAIN
        )
        loaded = r.model.state_dict()
        assert all(torch.equal(v, loaded[k]) for k, v in r.step.state.items())
        seen.append(r.server_round)
    assert seen == [1, 2]
