"""The method's levers: paired synthetic batches and missing-mass weighting (ZDAC), replay
of the banks in the server's fine-tuning set (ZDAS)."""

import numpy as np
import pytest
import torch

from fedcore.algorithms.zdac import Synthetic, ZdacConfig, loss_weights, mix_synthetic
from fedcore.algorithms.zdas import ZdasConfig, replay
from fedcore.data import ArrayDataset
from fedcore.losses import LocalData, train_local
from fedcore.models import build_model
from fedcore.training import Samples, Source, TrainConfig, evaluate
from inversion import SyntheticBank


def test_missing_mass_weights():
    counts = np.array([90, 10, 0])  # N = 100, deficit D = 0 + 80 + 90 = 170
    a = 170 / 270
    assert loss_weights(ZdacConfig(synthetic_weight=0.3), counts, 50) == (1.0, 0.3)
    paired = ZdacConfig(weighting="missing-mass", paired_batch_size=8)
    assert loss_weights(paired, counts, 50) == pytest.approx((1 - a, a))
    real_w, syn_w = loss_weights(ZdacConfig(weighting="missing-mass"), counts, 50)
    # Shuffled in: the synthetic samples' share of the total weight is the missing mass.
    assert 50 * syn_w / (50 * syn_w + 100 * real_w) == pytest.approx(a)
    assert loss_weights(paired, np.array([5, 5, 5]), 50) == (1.0, 0.0)  # balanced: no share


def test_paired_batches_cycle_through_every_sample():
    p = Source(Samples(torch.zeros(10, 1), torch.arange(10)), per_batch=4)
    it = p.batches(torch.Generator().manual_seed(0))
    first = torch.cat([next(it) for _ in range(2)])  # one pass: 2 full batches of 4
    assert len(set(first.tolist())) == 8
    assert all(len(next(it)) == 4 for _ in range(5))
    small = Source(Samples(torch.zeros(3, 1), torch.arange(3)), per_batch=4).batches(
        torch.Generator().manual_seed(0)
    )
    assert sorted(next(small).tolist()) == [0, 1, 2]  # fewer samples than a batch: all of them


@pytest.mark.parametrize("paired_batch_size", [0, 16])
def test_synthetic_samples_teach_a_class_the_client_lacks(paired_batch_size):
    """Real data holds class 0 only; synthetic samples of class 1 (a distinct pattern) are
    learned only when they carry weight, shuffled in or paired."""
    g = torch.Generator().manual_seed(0)
    norm = ((0.0,), (1.0,), ("a", "b"))
    real = ArrayDataset(torch.randn(64, 1, 28, 28, generator=g) - 1, torch.zeros(64).long(), *norm)
    sx = torch.randn(32, 1, 28, 28, generator=g) + 1
    test = ArrayDataset(sx.clone(), torch.ones(32).long(), *norm)
    accs = []
    for w in (0.0, 1.0):
        torch.manual_seed(0)
        model = build_model("cnn", 1, 2)
        syn = Synthetic(sx, torch.ones(32).long(), weight=w, paired_batch_size=paired_batch_size)
        data = mix_synthetic(LocalData.real(real), syn)
        stats = train_local(model, data, TrainConfig(local_epochs=2, lr=0.05))
        assert stats.num_examples == 64
        assert stats.steps == (4 if paired_batch_size else 6)  # paired: real batches only
        accs.append(evaluate(model, test)["accuracy"])
    assert accs[0] < 0.5 < accs[1] == 1.0


def test_replay_tops_every_class_up_from_fresh_pool_samples():
    pool = SyntheticBank(
        torch.arange(13.0).view(13, 1),
        torch.tensor([0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 0]),
        torch.tensor([5, 5, 5, 5, 5, 5, 5, 1, 1, 1, 1, 1, 6]),  # class 2 was refined in round 1
    )
    y = torch.tensor([0, 0, 0])  # this round's (6) samples: three of class 0, one in the pool
    x_r, y_r = replay([pool], y, 4, 3, server_round=6, max_age=2,
                      generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert sorted(y_r.tolist()) == [0, 1, 1, 1, 1]  # class 0 to 4, class 1 to 4, 2 is stale
    assert set(x_r[y_r == 0].flatten().tolist()) <= {0.0, 1.0}  # not this round's sample 12
    assert set(x_r[y_r == 1].flatten().tolist()) <= {2.0, 3.0, 4.0, 5.0, 6.0}
    assert replay([SyntheticBank()], y, 4, 3, 6, 2, torch.Generator()) is None
    assert replay([pool], torch.tensor([0] * 4 + [1] * 4), 4, 2, 6, 2, torch.Generator()) is None


def test_replay_refuses_distillation_targets_it_cannot_give():
    assert ZdasConfig(replay_per_class=64).problems("zdas.") == []
    (msg,) = ZdasConfig(replay_per_class=64, kd_weight=1.0).problems("zdas.")
    assert msg.startswith("zdas.replay_per_class") and "zdas.kd_weight=0" in msg
