"""The client extension point: sample sources with their origin, logit adjustments and loss
terms over the whole batch reach the one SGD loop, which knows no method; FedLC is built on
it, and so is a made-up method here with a second sample source and a feature-level term."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fedcore.algorithms import client_hooks
from fedcore.algorithms.base import ClientHook, ClientRound, LocalPlan
from fedcore.algorithms.fedlc import calibration
from fedcore.algorithms.zdac import Synthetic, mix_synthetic
from fedcore.losses import OWN, LocalData, train_local
from fedcore.models import build_model
from fedcore.protocol import FEDLC_TAU
from fedcore.training import SYNTHETIC, Batch, Samples, Source, TrainConfig, TrainStats

CFG = TrainConfig(local_epochs=1, batch_size=16, lr=0.05)


def _data(n: int = 64, classes: int = 10) -> LocalData:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, classes, (n,), generator=g)
    return LocalData({OWN: Source(Samples(x, y, torch.ones(n)))}, n)


def _syn(n: int, paired: int = 0) -> Synthetic:
    g = torch.Generator().manual_seed(1)
    return Synthetic(torch.randn(n, 1, 28, 28, generator=g), torch.full((n,), 3),
                     paired_batch_size=paired)  # fmt: skip


def _origins(data: LocalData) -> torch.Tensor:
    """Every origin an output term sees in one epoch over ``data``."""
    seen: list[torch.Tensor] = []

    def term(batch: Batch) -> torch.Tensor:
        assert batch.logits.shape[0] == batch.y.shape[0] == batch.origin.shape[0]
        seen.append(batch.origin.clone())
        return batch.logits.sum() * 0.0

    train_local(build_model("cnn", 1, 10), data, CFG, extra_terms=[term])
    return torch.cat(seen)


def test_output_terms_see_where_each_sample_came_from():
    shuffled = mix_synthetic(_data(), _syn(32))
    assert shuffled.num_real == 64 and len(shuffled.own_samples.y) == 96
    with pytest.raises(ValueError, match="already holds synthetic samples"):
        mix_synthetic(shuffled, _syn(4))  # never silently drops what another hook added
    assert int((_origins(shuffled) == SYNTHETIC).sum()) == 32  # one epoch: each sample once
    paired = mix_synthetic(_data(), _syn(10, paired=4))
    origins = _origins(paired)  # 4 real batches, each with 4 synthetic samples beside it
    assert int((origins == SYNTHETIC).sum()) == 16 and int((origins == 0).sum()) == 64


def test_an_identity_logit_adjustment_changes_nothing_and_a_shift_changes_training():
    def train(adjust: list) -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = build_model("cnn", 1, 10)
        d = _data()
        d.own.adjust.extend(adjust)
        train_local(model, d, CFG, seed=3)
        return [p.detach() for p in model.parameters()]

    plain, same = train([]), train([lambda z, o: z])
    assert all(torch.equal(a, b) for a, b in zip(plain, same, strict=True))
    shifted = train([lambda z, o: z - torch.arange(10.0)])
    assert not all(torch.equal(a, b) for a, b in zip(plain, shifted, strict=True))


def test_fedlc_calibration_lowers_rare_classes_and_silences_absent_ones():
    counts = np.array([100, 1, 0])
    shift = calibration(counts, tau=1.0)
    assert torch.allclose(shift[:2], torch.tensor([100**-0.25, 1.0]))
    assert shift[2] > 50  # absent: clamped, a shift so large the class gets ~no probability
    model = torch.nn.Linear(4, 3)
    rnd = ClientRound(1, 0, 0, counts, None, None, model, {}, {}, torch.device("cpu"))
    plan = LocalPlan(_data(8, 3))
    (hook,) = client_hooks({FEDLC_TAU: 1.0}, {})
    hook.before(rnd, plan)
    (adjust,) = plan.logit_adjust
    mixed = adjust(torch.zeros(2, 3), torch.tensor([0, SYNTHETIC]))
    assert torch.equal(mixed[1], torch.zeros(3)) and torch.equal(mixed[0], -shift)  # own only
    logits = torch.zeros(2, 3, requires_grad=True)
    F.cross_entropy(adjust(logits, torch.zeros(2)), torch.tensor([0, 0])).backward()
    grad = logits.grad
    assert grad is not None and abs(float(grad[:, 2].sum())) < 1e-12  # absent class: no push
    # the rare class is pushed down less than by plain cross-entropy over the present classes
    plain = float(F.softmax(torch.zeros(2), 0)[1])  # 0.5 per sample of class 0
    assert float(grad[:, 1].mean()) * 2 < plain


class TwinViewHook(ClientHook):
    """A made-up method, built only from what the loop offers: a second sample source (each
    own image's mirror, 8 beside every batch) and a feature-level term (the penultimate
    features of an image and of its mirror pulled together), plus a count of the batches
    that term saw."""

    def __init__(self) -> None:
        self.batches = 0

    def before(self, rnd: ClientRound, plan: LocalPlan) -> None:
        own = plan.data.own_samples
        plan.data.sources["mirror"] = Source(Samples(own.x.flip(-1), own.y), per_batch=8)

        def features(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
            return model.classifier[:-1](model.features(x))  # the cnn's penultimate layer

        def twin_term(batch: Batch) -> torch.Tensor:
            self.batches += 1
            m = batch.parts["mirror"]  # the mirrors' rows, and which own images they mirror
            z = features(batch.model, batch.x[m.rows])
            z_own = features(batch.model, own.x[m.idx].to(batch.x.device))
            return 0.1 * (z - z_own).pow(2).mean()

        plan.terms.append(twin_term)

    def after(self, rnd: ClientRound, stats: TrainStats, plan: LocalPlan) -> None:
        plan.metrics["twin-batches"] = self.batches


def test_a_new_method_adds_a_source_and_a_feature_term_without_touching_the_loop():
    torch.manual_seed(0)
    model = build_model("cnn", 1, 10)
    plan, hook = LocalPlan(_data()), TwinViewHook()
    rnd = ClientRound(1, 0, 0, np.ones(10), None, CFG, model, {}, {}, torch.device("cpu"))
    hook.before(rnd, plan)
    before = [p.detach().clone() for p in model.parameters()]
    stats = train_local(model, plan.data, CFG, seed=1)
    hook.after(rnd, stats, plan)
    assert stats.steps == 4 and plan.metrics["twin-batches"] == 4  # every batch, once
    assert stats.num_examples == 64  # the mirrors are not the client's own samples
    # the term pulls features together: same seed, without it the weights end elsewhere
    torch.manual_seed(0)
    plain = build_model("cnn", 1, 10)
    train_local(plain, _data(), CFG, seed=1)
    moved = [p.detach() for p in model.parameters()]
    assert not all(torch.equal(a, b) for a, b in zip(moved, plain.parameters(), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(moved, before, strict=True))
