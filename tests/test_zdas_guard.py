"""ZDAS's guard: clients score the fine-tuned global model against the plain average on
their own data, and the server scales the fine-tuning's step by the trust that earns."""

import math

import pytest
import torch

from fedcore.algorithms.base import Received
from fedcore.algorithms.zdas_guard import MIN_TRUST, blend, guarded, median_delta, next_trust
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
    assert next_trust(0.25, -0.1) == 0.5  # global model's loss lower: it helped
    assert next_trust(1.0, -0.1) == 1.0  # at most the whole step
    assert next_trust(0.5, 0.1) == 0.25
    assert next_trust(MIN_TRUST, 0.1) == MIN_TRUST  # never off entirely
    assert next_trust(0.5, None) == 0.5 == next_trust(0.5, 0.0)  # no scores, a tie: unchanged


def _reply(pid, n, g, p):
    return TrainReply(pid, n, {}, {GUARD_GLOBAL_LOSS: g, GUARD_PLAIN_LOSS: p})


def test_the_median_client_decides_and_unusable_replies_are_ignored():
    replies = [_reply(0, 10, 0.2, 0.4), _reply(1, 10, 0.3, 0.4), _reply(2, 10**6, 90.0, 0.1),
               _reply(3, 50, math.nan, 0.1), _reply(4, 50, -1.0, 0.1), _reply(5, 50, True, 0.1),
               TrainReply(6, 50, {}, {})]  # fmt: skip
    assert median_delta(replies) == pytest.approx(-0.1)  # one liar with a huge count: outvoted
    assert median_delta(replies[3:]) is None


def test_guarded_step_moves_the_trust_and_blends_with_it():
    plain, tuned = {"w": torch.zeros(2)}, {"w": torch.ones(2)}
    worse = [_reply(p, 10, 0.5, 0.4) for p in range(3)]  # the fine-tuned model did worse
    state, stepped, metrics = guarded(1.0, Received(2, plain, plain, worse), tuned)
    assert state["trust"] == 0.5 == metrics["zdas-trust"] and state["plain"] is plain
    assert torch.equal(stepped["w"], torch.full((2,), 0.5))
    assert metrics["zdas-guard-delta"] == pytest.approx(0.1)


def test_guarded_rounds_send_the_plain_average_and_score_it():
    cfg = load_config(None, (
        "algorithm=zdas zdas.guard=true zdas.end_round=3 data.train_subset=600 "
        "data.test_subset=200 partition.client_test_size=50 zdas.samples_per_client=10 "
        "zdas.inversion.steps=5"
    )).with_clients(3)  # fmt: skip
    fed = build_federation(cfg)
    model, algo = build_server(cfg, fed.train.spec, torch.device("cpu"))
    state, client_states, rows = model.state_dict(), {}, []
    algo_state = algo.init(state)
    assert outgoing(algo, algo_state, 1, state).arrays == {}  # round 1: nothing to score yet
    for rnd in (1, 2, 3, 4):
        if rnd == 3:
            plain = outgoing(algo, algo_state, 3, state).arrays[ZDAS_PLAIN]
            assert plain is algo_state["guard"]["plain"]
        algo_state, step, metrics = run_round(
            cfg, algo, algo_state, fed, state, rnd, [0, 1, 2], client_states, "cpu"
        )
        state = step.state
        rows.append(metrics)
    assert GUARD_GLOBAL_LOSS not in rows[0] and rows[0]["zdas-trust"] == 1.0
    trust = 1.0
    for r in rows[1:3]:  # clients scored two different models; the trust follows the median
        assert r[GUARD_GLOBAL_LOSS] >= 0 and r[GUARD_PLAIN_LOSS] >= 0
        assert r["zdas-guard-delta"] != 0
        trust = next_trust(trust, r["zdas-guard-delta"])
        assert r["zdas-trust"] == trust
    # round 4 is past zdas.end_round: nothing sent or scored, the trust kept
    assert GUARD_GLOBAL_LOSS not in rows[3] and algo_state["guard"] == {"trust": trust}
