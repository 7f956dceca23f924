"""The client extension point: samples with their origin, logit adjustments and loss terms on
the outputs reach the one SGD loop; FedLC is built on it."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fedcore.algorithms import client_hooks
from fedcore.algorithms.base import ClientRound, LocalPlan
from fedcore.algorithms.fedlc import calibration
from fedcore.algorithms.zdac import Synthetic, mix_synthetic
from fedcore.models import build_model
from fedcore.protocol import FEDLC_TAU
from fedcore.training import SYNTHETIC, LocalData, LossTerms, Samples, TrainConfig, sgd_train

CFG = TrainConfig(local_epochs=1, batch_size=16, lr=0.05)


def _data(n: int = 64, classes: int = 10) -> LocalData:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, classes, (n,), generator=g)
    return LocalData(Samples(x, y, torch.ones(n)), n)


def _syn(n: int, paired: int = 0) -> Synthetic:
    g = torch.Generator().manual_seed(1)
    return Synthetic(torch.randn(n, 1, 28, 28, generator=g), torch.full((n,), 3),
                     paired_batch_size=paired)  # fmt: skip


def _origins(data: LocalData) -> torch.Tensor:
    """Every origin an output term sees in one epoch over ``data``."""
    seen: list[torch.Tensor] = []

    def term(logits: torch.Tensor, y: torch.Tensor, origin: torch.Tensor) -> torch.Tensor:
        assert logits.shape[0] == y.shape[0] == origin.shape[0]
        seen.append(origin.clone())
        return logits.sum() * 0.0

    sgd_train(build_model("cnn", 1, 10), data.samples, CFG, data.objective,
              terms=LossTerms(output_terms=[term]), paired=data.paired)  # fmt: skip
    return torch.cat(seen)


def test_output_terms_see_where_each_sample_came_from():
    shuffled = mix_synthetic(_data(), _syn(32))
    assert shuffled.num_real == 64 and len(shuffled.samples.y) == 96
    with pytest.raises(ValueError, match="already holds added samples"):
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
        sgd_train(model, d.samples, CFG, seed=3, terms=LossTerms(logit_adjust=adjust))
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
