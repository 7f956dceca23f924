"""Clients that lie: configured attacks act on exactly the chosen clients, robust
aggregators compose by name and resist a poisoned reply, and ZDAS's screen leaves out
the model whose inversions stand out (fast, no Flower)."""

import functools

import numpy as np
import pytest
import torch

from fedcore.algorithms import resolve
from fedcore.algorithms.base import Received
from fedcore.algorithms.zdas import Inverted
from fedcore.algorithms.zdas_screen import (
    claimed_accuracy,
    robust_z,
    screen,
    update_cosines,
    votes_of,
)
from fedcore.config import ConfigError, load_config
from fedcore.federation import build_federation
from fedcore.models import build_model
from fedcore.protocol import TrainReply, TrainRequest
from fedcore.round import build_server, client_update, outgoing

TINY = (
    "data.train_subset=600 data.test_subset=100 partition.client_test_size=20 "
    "partition.alpha=0.5 train.local_epochs=1 seed=3"
)


@functools.cache
def _federation():
    return build_federation(load_config(None, TINY).with_clients(5))


def _update(overrides: str, pid: int):
    """Partition ``pid``'s reply to round 1 of a 5-client federation, and what was sent."""
    cfg = load_config(None, f"{TINY} {overrides}").with_clients(5)
    fed = _federation()  # the attack keys do not change the federation
    model, algo = build_server(cfg, fed.train.spec, torch.device("cpu"))
    sent = model.state_dict()
    out = outgoing(algo, algo.init(sent), 1, sent)
    request = TrainRequest(sent, 1, cfg.seed, out.config, out.arrays)
    return client_update(cfg, fed.client(pid), pid, request, {}, torch.device("cpu")), sent, cfg


def test_attackers_are_fixed_per_run_and_only_they_lie():
    cfg = load_config(None, "attack.kind=sign_flip attack.share=0.4").with_clients(5)
    bad = cfg.attack.attackers(5, cfg.seed)
    assert len(bad) == 2 and bad == cfg.attack.attackers(5, cfg.seed)
    assert load_config(None, "").attack.attackers(5, 0) == frozenset()  # off by default
    liar, honest = min(bad), min(set(range(5)) - bad)
    for pid, lies in ((liar, True), (honest, False)):
        clean, sent, _ = _update("", pid)
        attacked, _, _ = _update("attack.kind=sign_flip attack.share=0.4", pid)
        w = "features.0.weight"
        flipped = sent[w] - (clean.state[w] - sent[w])
        assert torch.allclose(attacked.state[w], flipped, atol=1e-6) is lies
        assert torch.equal(attacked.state[w], clean.state[w]) is not lies


def test_inflated_count_and_label_flip_attackers():
    cfg = load_config(None, "attack.kind=inflate_count attack.share=1").with_clients(5)
    clean, _, _ = _update("", 0)
    inflated, _, _ = _update("attack.kind=inflate_count attack.share=1", 0)
    assert inflated.num_examples == 100 * clean.num_examples
    flipped, _, _ = _update("attack.kind=label_flip attack.share=1", 0)
    assert flipped.num_examples == clean.num_examples
    assert not torch.equal(flipped.state["classifier.3.weight"], clean.state["classifier.3.weight"])
    with pytest.raises(ConfigError, match=r"attack.kind: 'flip' not in"):
        load_config(None, "attack.kind=flip")
    assert cfg.attack.count_factor == 100


def test_robust_aggregators_compose_by_name_and_refuse_secure_aggregation():
    assert [c.name for c in resolve("zdas+scaffold+trimmedmean")] == [
        "trimmedmean", "zdas", "scaffold"]  # fmt: skip
    with pytest.raises(ConfigError, match="needs each client's model"):
        load_config(None, "algorithm=fedavg+median server.secure_aggregation=true")
    with pytest.raises(ConfigError, match="each replace the average"):
        load_config(None, "algorithm=krum+qfedavg")
    with pytest.raises(ConfigError, match=r"trimmedmean.trim: must be in \[0, 0.5\)"):
        load_config(None, "algorithm=trimmedmean trimmedmean.trim=0.5")


@pytest.mark.parametrize("name", ["median", "trimmedmean", "krum"])
def test_a_robust_aggregator_ignores_one_poisoned_reply(name):
    cfg = load_config(None, f"algorithm={name}").with_clients(7)
    spec = _federation().train.spec
    model, algo = build_server(cfg, spec, torch.device("cpu"))
    honest = model.state_dict()
    gen = torch.Generator().manual_seed(0)
    states = [{k: v + 0.01 * torch.randn(v.shape, generator=gen) if v.is_floating_point()
               else v for k, v in honest.items()} for _ in range(7)]  # fmt: skip
    states[3] = {k: v * -100 if v.is_floating_point() else v for k, v in honest.items()}
    counts = [60] * 7
    counts[3] = 10**6  # the poisoned reply also claims a huge count
    replies = [TrainReply(p, counts[p], states[p], {}) for p in range(7)]
    _, step = algo.apply(algo.init(honest), Received(1, honest, honest, replies))
    err = max(float((step.state[k] - honest[k]).abs().max()) for k in algo.setup.param_names)
    assert err < 0.05  # the plain average would sit near -100x the weights


def test_zdas_screen_flags_the_outlying_models_only():
    bn = {0: 1.0, 1: 1.2, 2: 0.9, 3: 1.1, 4: 9.0, 5: 1.0}  # 4: inversions miss BN statistics
    agree = {0: 0.8, 1: 0.7, 2: 0.75, 3: 0.1, 4: 0.8, 5: 0.72}  # 3: the aggregate disagrees
    assert screen(bn, agree, 3.0) == [3, 4]
    assert screen(bn, agree, 0.0) == []  # off
    assert screen({0: 1.0, 1: 5.0}, {0: 1.0, 1: 0.0}, 3.0) == []  # too few models to judge
    z = robust_z({0: 1.0, 1: 1.0, 2: 1.0}, 0.5)
    assert z == {0: 0.0, 1: 0.0, 2: 0.0}  # all alike: the floor keeps the scale finite


def test_a_reversed_update_points_away_from_the_average_and_is_screened():
    sent = {"w": torch.zeros(4), "n": torch.tensor(3.0)}  # "n": a buffer, not compared
    steps = {0: [1.0, 0.2, 0, 0], 1: [0.8, 0, 0.3, 0], 2: [1.0, 0, 0, 0.4], 3: [-1.0, -0.2, 0, 0]}
    models = {p: {"w": torch.tensor(v), "n": torch.tensor(-9.0)} for p, v in steps.items()}
    averaged = {"w": torch.stack([m["w"] for m in models.values()]).median(0).values,
                "n": torch.tensor(3.0)}  # fmt: skip
    cos = update_cosines(sent, averaged, models, ["w"])
    assert min(cos[p] for p in (0, 1, 2)) > 0.5 and cos[3] < -0.5
    bn, agree = dict.fromkeys(steps, 1.0), dict.fromkeys(steps, 0.8)  # inversions look alike
    assert screen(bn, agree, 3.0, cos) == [3] and screen(bn, agree, 3.0) == []


def test_inverted_without_drops_a_sources_samples_and_teacher():
    teachers = [build_model("cnn", 1, 10) for _ in range(3)]
    x, y = torch.randn(6, 1, 28, 28), torch.tensor([0, 1, 2, 3, 4, 5])
    inv = Inverted(x, y, torch.tensor([7, 7, 2, 2, 9, 9]), teachers, {})
    kept = inv.without([2])
    assert kept.sources.tolist() == [7, 7, 9, 9] and kept.y.tolist() == [0, 1, 4, 5]
    assert kept.teachers == [teachers[0], teachers[2]]
    assert np.array_equal(kept.x.numpy(), x[[0, 1, 4, 5]].numpy())


def test_a_model_that_mislabels_its_own_classes_is_left_out():
    """Claimed-class accuracy: each model labels its peers' samples of the classes it
    holds; one that calls them something else (a reversed or label-flipped model) is out,
    whatever the round's other models do; a model with no such samples is not judged."""
    classes = 4
    y = torch.arange(classes).repeat(2)
    x = torch.eye(classes)[y].repeat(4, 1)  # every source's samples look like their class
    liar = torch.nn.Linear(classes, classes, bias=False)
    with torch.no_grad():
        liar.weight.copy_(torch.eye(classes).flip(0))  # calls class c "C-1-c"
    models = [torch.nn.Identity(), torch.nn.Identity(), liar, torch.nn.Identity()]
    sources = torch.tensor([1] * 8 + [2] * 8 + [5] * 8 + [9] * 8)
    holds = torch.ones(4, classes, dtype=torch.bool)
    claimed = claimed_accuracy(votes_of(models, x, y.repeat(4), "cpu"), holds, y.repeat(4), sources)
    assert claimed == {1: 1.0, 2: 1.0, 5: 0.0, 9: 1.0}
    bn = dict.fromkeys(claimed, 1.0)
    assert screen(bn, dict.fromkeys(claimed, 1.0), 3.0, None, claimed) == [5]
    holds[3] = torch.tensor([True, False, False, False])  # 9 claims only class 0 ...
    targets = y.repeat(4)
    targets[(sources != 9) & (targets == 0)] = 1  # ... and no other source sent class 0
    none = claimed_accuracy(votes_of(models, x, targets, "cpu"), holds, targets, sources)
    assert 9 not in none and none[5] == 0.0


def test_a_zdas_round_with_the_screen_leaves_out_the_reversed_model():
    """The screen inside a ZDAS round: three models step one way from the sent model, the
    fourth the opposite way; it is left out, its samples are gone from the round's set, and
    the metric counts it."""
    from fedcore.algorithms.zdas import ZdasConfig, zdas_round
    from inversion import InversionConfig, OwnBanks

    torch.manual_seed(0)
    make = functools.partial(build_model, "cnn", 1, 10)
    sent = make().state_dict()
    names = tuple(n for n, _ in make().named_parameters())
    step = {n: 0.05 * torch.randn_like(sent[n]) for n in names}

    def moved(sign: float) -> dict:
        noise = {n: 0.01 * torch.randn_like(sent[n]) for n in names}
        return {k: v + sign * step[k] + noise[k] if k in step else v for k, v in sent.items()}

    models = [moved(1.0), moved(1.0), moved(1.0), moved(-1.0)]
    averaged = {k: sum(m[k] for m in models) / 4 if k in step else v for k, v in sent.items()}
    cfg = ZdasConfig(samples_per_client=10, screen=3.0, finetune_epochs=1,
                     inversion=InversionConfig(steps=5))  # fmt: skip
    clients = [(p, m, None) for p, m in enumerate(models)]
    out = zdas_round(make, averaged, clients, cfg, OwnBanks(), 1, _federation().train.spec,
                     sent=sent, param_names=names)  # fmt: skip
    assert out.left_out == (3,) and out.metrics["zdas-screened"] == 1
    assert 3 not in out.sources.tolist() and len(out.y) == 3 * 10
