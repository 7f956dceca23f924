"""ZDAS's guard: clients score the fine-tuned global model against the plain average on
their own data, and the server scales the fine-tuning's step by the trust that earns."""

import math

import pytest
import torch

from fedcore.algorithms.zdas_guard import MIN_TRUST, blend, next_trust, scores
from fedcore.config import load_config
from fedcore.federation import build_federation
from fedcore.protocol import GUARD_GLOBAL_LOSS, GUARD_PLAIN_LOSS, ZDAS_PLAIN, TrainReply
from fedcore.round import build_server, outgoing, run_round


def test_blend_moves_trust_of_the_step_and_keeps_counters():
    plain = {"w": torch.zeros(3), "n": torch.tensor(1)}
    tuned = {"w": torch.tensor([2.0, -2.0, 4.0]), "n": torch.tensor(5)}
    half = blend(plain, tuned, 0.5)
    assert torch.equal(half["w"], torch.tensor([1.0, -1.0, 2.0])) and int(half["n"]) == 5
    assert blend(plain, tuned, 1.0) is tuned


def test_trust_doubles_when_the_fine_tuning_helps_and_halves_when_it_hurts():
    assert next_trust(0.25, (0.4, 0.5)) == 0.5  # global model's loss lower: it helped
    assert next_trust(1.0, (0.4, 0.5)) == 1.0  # at most the whole step
    assert next_trust(0.5, (0.6, 0.5)) == 0.25
    assert next_trust(MIN_TRUST, (0.6, 0.5)) == MIN_TRUST  # never off entirely
    assert next_trust(0.5, None) == 0.5  # no scores: unchanged


def _reply(pid, n, g, p):
    return TrainReply(pid, n, {}, {GUARD_GLOBAL_LOSS: g, GUARD_PLAIN_LOSS: p})


def test_scores_are_example_weighted_and_ignore_unusable_replies():
    replies = [_reply(0, 100, 0.2, 0.4), _reply(1, 300, 0.6, 0.4), _reply(2, 50, math.nan, 0.1),
               _reply(3, 50, -1.0, 0.1), TrainReply(4, 50, {}, {})]  # fmt: skip
    assert scores(replies) == pytest.approx((0.5, 0.4))
    assert scores(replies[2:]) is None


def test_guarded_rounds_send_the_plain_average_and_scale_the_step():
    cfg = load_config(None, (
        "algorithm=zdas zdas.guard=true data.train_subset=600 data.test_subset=200 "
        "partition.client_test_size=50 zdas.samples_per_client=10 zdas.inversion.steps=5"
    )).with_clients(3)  # fmt: skip
    fed = build_federation(cfg)
    model, algo = build_server(cfg, fed.train.spec, torch.device("cpu"))
    state, client_states, rows = model.state_dict(), {}, []
    algo_state = algo.init(state)
    assert outgoing(algo, algo_state, 1, state).arrays == {}  # round 1: nothing to score yet
    for rnd in (1, 2, 3):
        algo_state, step, metrics = run_round(
            cfg, algo, algo_state, fed, state, rnd, [0, 1, 2], client_states, "cpu"
        )
        state = step.state
        rows.append(metrics)
    plain = outgoing(algo, algo_state, 4, state).arrays[ZDAS_PLAIN]
    trust = algo_state["guard"]["trust"]
    assert plain is algo_state["guard"]["plain"] and 0 < trust <= 1
    assert GUARD_GLOBAL_LOSS not in rows[0] and "zdas-guard-delta" not in rows[0]
    for r in rows[1:]:  # clients scored both models, the server set the trust from them
        assert r[GUARD_GLOBAL_LOSS] >= 0 and r[GUARD_PLAIN_LOSS] >= 0
        assert r["zdas-guard-delta"] == pytest.approx(r[GUARD_GLOBAL_LOSS] - r[GUARD_PLAIN_LOSS])
    expected = 1.0
    for r in rows:
        expected = next_trust(expected, (r["zdas-guard-delta"], 0.0) if r is not rows[0] else None)
        assert r["zdas-trust"] == expected
