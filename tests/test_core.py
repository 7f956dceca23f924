"""FedAvg weighting, the FedProx term, fairness metrics and local training, without Flower."""

import math

import numpy as np
import pytest
import torch

from fedcore.algorithms import client_hooks
from fedcore.algorithms.base import ClientHook, ClientRound, LocalPlan
from fedcore.algorithms.fedavg import weighted_average
from fedcore.algorithms.fedprox import proximal_term
from fedcore.losses import LocalData, train_local
from fedcore.metrics import fairness_summary
from fedcore.models import build_model, num_parameters
from fedcore.protocol import PROXIMAL_MU
from fedcore.training import TrainConfig, evaluate


def test_fedavg_weights_by_examples_exactly():
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(10)}
    b = {"w": torch.tensor([4.0, 8.0]), "n": torch.tensor(20)}
    out = weighted_average([a, b], [100, 300])
    assert torch.equal(out["w"], torch.tensor([3.25, 6.5]))  # (1*1 + 3*4)/4, (2 + 24)/4
    assert out["n"].dtype == torch.int64 and int(out["n"]) == 18  # round(17.5) -> 18
    with pytest.raises(ValueError, match="shape mismatch"):
        weighted_average([a, {"w": torch.zeros(3), "n": torch.tensor(1)}], [1, 1])
    with pytest.raises(ValueError, match="positive sum"):
        weighted_average([a], [0])


def test_fedavg_of_identical_models_is_identity():
    m = build_model("cnn", 1, 10)
    s = m.state_dict()
    out = weighted_average([s, s, s], [1, 5, 9])
    assert all(torch.allclose(out[k].float(), s[k].float()) for k in s)
    assert {k: v.dtype for k, v in out.items()} == {k: v.dtype for k, v in s.items()}


def test_proximal_term_value_and_gradient():
    lin = torch.nn.Linear(2, 1, bias=True)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 2.0]]))
        lin.bias.fill_(3.0)
    anchor = [torch.zeros(1, 2), torch.tensor([1.0])]
    term = proximal_term(lin, anchor)
    assert math.isclose(float(term.detach()), 0.5 * (1 + 4 + 4))
    term.backward()
    assert torch.equal(lin.weight.grad, torch.tensor([[1.0, 2.0]]))  # d/dw = w - w_global
    assert torch.equal(lin.bias.grad, torch.tensor([2.0]))


def test_fedprox_keeps_weights_closer_to_global():
    torch.manual_seed(0)
    x, y = torch.randn(256, 1, 28, 28), torch.randint(0, 10, (256,))
    ds = torch.utils.data.TensorDataset(x, y)  # any Dataset is accepted
    base = build_model("cnn", 1, 10)
    start = [p.detach().clone() for p in base.parameters()]
    dists = {}
    for mu in (0.0, 1.0):
        m = build_model("cnn", 1, 10)
        m.load_state_dict(base.state_dict())
        plan = LocalPlan(LocalData.real(ds))
        (hook,) = client_hooks({PROXIMAL_MU: mu}, {}) or (ClientHook(),)  # as a client would
        hook.before(ClientRound(1, 0, 1, None, None, None, m, {}, {}, "cpu"), plan)
        cfg = TrainConfig(local_epochs=2, lr=0.05)
        train_local(m, plan.data, cfg, seed=1, extra_terms=plan.regularizers)
        dists[mu] = float(proximal_term(m, start).detach())
    assert dists[1.0] < 0.8 * dists[0.0]


def test_fairness_summary():
    s = fairness_summary([0.1, 0.5, 0.9, 0.7, 0.3, 0.6, 0.8, 0.4, 0.2, 1.0])
    assert math.isclose(s["client_acc_mean"], 0.55)
    assert math.isclose(s["client_acc_std"], math.sqrt(0.0825))
    assert s["client_acc_worst10"] == 0.1 and s["client_acc_best10"] == 1.0
    s20 = fairness_summary([0.0, 1.0] + [0.5] * 18)  # 10% of 20 clients = 2 clients
    assert s20["client_acc_worst10"] == 0.25 and s20["client_acc_best10"] == 0.75
    with pytest.raises(ValueError):
        fairness_summary([])


def test_models_have_batchnorm_and_expected_size():
    cnn = build_model("cnn", 1, 10)
    assert 350_000 < num_parameters(cnn) < 450_000
    assert cnn(torch.randn(4, 1, 28, 28)).shape == (4, 10)
    res = build_model("resnet", 3, 10)
    assert res(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    for m in (cnn, res):
        assert any(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules())
    with pytest.raises(ValueError, match="neither a built-in model"):
        build_model("vgg", 1, 10)


def test_local_training_learns_real_data():
    from fedcore.datasets import load_dataset

    s = load_dataset("fashion-mnist")
    torch.manual_seed(0)
    m = build_model("cnn", 1, 10)
    train_local(m, LocalData.real(s.train.subset(range(3000))), TrainConfig(), seed=0)
    ev = evaluate(m, s.test.subset(range(1000)), num_classes=10)
    assert ev["accuracy"] > 0.6 and len(ev["per_class_accuracy"]) == 10


def test_client_spread_plot_skips_clients_that_did_not_report(tmp_path):
    from fedcore.plots import plot_client_spread

    rows = [
        {"round": 1, "client_accuracies": [0.5, None, 0.7]},
        {"round": 2, "client_accuracies": [float("nan"), 0.6, 0.8]},
    ]
    fig = plot_client_spread(rows, tmp_path / "spread.png")
    assert (tmp_path / "spread.png").stat().st_size > 0
    (ax,) = fig.axes
    assert list(ax.get_xticks()) == [1, 2]  # one box per round
    for pos, reported in ((1, [0.5, 0.7]), (2, [0.6, 0.8])):  # None and NaN left out
        lines = [line.get_data() for line in ax.get_lines()]
        drawn = [y for xs, ys in lines for x, y in zip(xs, ys, strict=True) if abs(x - pos) < 0.5]
        assert min(drawn) == pytest.approx(min(reported))
        assert max(drawn) == pytest.approx(max(reported))


def test_label_mix_of_a_large_federation_is_a_heatmap_of_shares(tmp_path):
    from fedcore.plots import MAX_BARS, plot_label_mix

    counts = np.random.default_rng(0).integers(0, 5, (MAX_BARS + 1, 10))
    counts[0] = 0  # a client with no samples: shares 0, not NaN
    fig = plot_label_mix(counts, [str(i) for i in range(10)], tmp_path / "mix.png")
    shares = fig.axes[0].images[0].get_array()
    assert shares.shape == (10, MAX_BARS + 1)
    assert np.allclose(shares[:, 1:].sum(0), 1) and not shares[:, 0].any()
    small = plot_label_mix(counts[:5], [str(i) for i in range(10)], tmp_path / "bars.png")
    assert not small.axes[0].images and len(small.axes[0].patches) == 5 * 10
