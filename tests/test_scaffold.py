"""SCAFFOLD's update rules, and that they remove client drift on a toy problem."""

import torch

from fedcore.algorithms.scaffold import (
    client_control_update,
    correction,
    server_control_update,
    zeros_like_params,
)
from fedcore.sampling import TRAIN, Sampling, sample_partitions


def test_option_ii_client_update_and_server_update():
    x = {"w": torch.tensor([1.0, 2.0])}
    y = {"w": torch.tensor([0.5, 1.0])}
    c = {"w": torch.tensor([0.1, 0.0])}
    c_i = {"w": torch.tensor([0.3, -0.2])}
    new, delta = client_control_update(c, c_i, x, y, steps=5, lr=0.1)
    # c_i+ = c_i - c + (x - y) / (K lr) = [0.3-0.1+1.0, -0.2-0+2.0]
    assert torch.allclose(new["w"], torch.tensor([1.2, 1.8]))
    assert torch.allclose(delta["w"], torch.tensor([0.9, 2.0]))
    c2 = server_control_update(c, [delta, {"w": torch.tensor([0.1, 0.0])}], num_clients=4)
    assert torch.allclose(c2["w"], torch.tensor([0.1 + 1.0 / 4, 2.0 / 4]))
    assert torch.allclose(correction(c, c_i, ["w"])[0], torch.tensor([-0.2, 0.2]))
    assert zeros_like_params(x)["w"].tolist() == [0.0, 0.0]


def _run(
    scaffold: bool, rounds: int = 300, steps: int = 10, lr: float = 0.05, momentum: float = 0.0
) -> float:
    """Two clients with f_i(w) = h_i/2 (w - a_i)^2; the optimum of their sum is 0.8."""
    h, a = [1.0, 4.0], [4.0, 0.0]  # w* = (1*4 + 4*0) / 5 = 0.8
    w = {"w": torch.tensor([0.0])}
    c = zeros_like_params(w)
    cs = [zeros_like_params(w) for _ in h]
    for _ in range(rounds):
        ys, deltas = [], []
        for i in range(2):
            y = w["w"].clone()
            corr = correction(c, cs[i], ["w"])[0] if scaffold else 0.0
            buf = torch.zeros_like(y)  # SGD momentum buffer, fresh each round
            for _ in range(steps):
                buf = momentum * buf + h[i] * (y - a[i]) + corr
                y = y - lr * buf
            ys.append(y)
            if scaffold:
                cs[i], d = client_control_update(c, cs[i], w, {"w": y}, steps, lr, momentum)
                deltas.append(d)
        w = {"w": (ys[0] + ys[1]) / 2}
        if scaffold:
            c = server_control_update(c, deltas, num_clients=2)
    return float(w["w"])


def test_scaffold_removes_the_drift_that_fedavg_has():
    assert abs(_run(scaffold=True) - 0.8) < 1e-3
    assert abs(_run(scaffold=False) - 0.8) > 0.1  # FedAvg's fixed point is biased


def test_scaffold_with_momentum_stays_stable_and_unbiased():
    # lr 0.02, momentum 0.9, 20 steps: the momentum-aware estimate converges to w* = 0.8
    w = _run(scaffold=True, rounds=400, steps=20, lr=0.02, momentum=0.9)
    assert abs(w - 0.8) < 1e-2
    assert abs(_run(scaffold=False, rounds=400, steps=20, lr=0.02, momentum=0.9) - 0.8) > 0.1


def test_scaffold_stays_unbiased_when_clients_are_sampled():
    """Four clients, two sampled per round by the app's seeded sampler: SCAFFOLD still
    converges to the optimum of the sum (c moves by sum(delta) / N, clients keep c_i),
    FedAvg keeps wandering around a biased point."""
    h, a = [1.0, 4.0, 2.0, 0.5], [4.0, 0.0, -2.0, 6.0]
    w_star = sum(hi * ai for hi, ai in zip(h, a, strict=True)) / sum(h)  # 0.4
    half = Sampling(0.5)

    def run(scaffold: bool, rounds: int = 800, steps: int = 10, lr: float = 0.05) -> list[float]:
        w = {"w": torch.tensor([0.0])}
        c = zeros_like_params(w)
        cs = [zeros_like_params(w) for _ in h]
        trace = []
        for rnd in range(1, rounds + 1):
            ys, deltas = [], []
            for i in sample_partitions(range(4), half, seed=0, server_round=rnd, purpose=TRAIN):
                y = w["w"].clone()
                corr = correction(c, cs[i], ["w"])[0] if scaffold else 0.0
                for _ in range(steps):
                    y = y - lr * (h[i] * (y - a[i]) + corr)
                ys.append(y)
                if scaffold:
                    cs[i], d = client_control_update(c, cs[i], w, {"w": y}, steps, lr)
                    deltas.append(d)
            w = {"w": sum(ys) / len(ys)}
            if scaffold:
                c = server_control_update(c, deltas, num_clients=4)
            trace.append(float(w["w"]))
        return trace

    assert max(abs(x - w_star) for x in run(scaffold=True)[-50:]) < 1e-3
    assert sum(abs(x - w_star) for x in run(scaffold=False)[-50:]) / 50 > 0.05
