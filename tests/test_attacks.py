"""Model-poisoning attacks: poisoned but well-formed updates, seeded and reproducible."""

from __future__ import annotations

import pytest
import torch

from fedcore.attacks import (
    ATTACKS,
    malicious_clients,
    permute_labels,
    random_update,
    scale,
    sign_flip,
)
from fedcore.types import StateDict

NAMES = ("w", "b")


def pair(seed: int = 0) -> tuple[StateDict, StateDict]:
    """A sent global model and an honest trained one (with a BatchNorm-like buffer set)."""
    gen = torch.Generator().manual_seed(seed)
    sent = {
        "w": torch.randn(20, 30, generator=gen),
        "b": torch.randn(30, generator=gen),
        "bn.running_mean": torch.zeros(4),
        "bn.num_batches_tracked": torch.tensor(10),
        "empty": torch.zeros(0),
    }
    trained = {k: v.clone() for k, v in sent.items()}
    trained["w"] += 0.01 * torch.randn(20, 30, generator=gen)
    trained["b"] += 0.01 * torch.randn(30, generator=gen)
    trained["bn.running_mean"] += 1.0
    trained["bn.num_batches_tracked"] += 7
    return sent, trained


def rms(t: torch.Tensor) -> float:
    return t.double().pow(2).mean().sqrt().item()


def test_sign_flip_reverses_the_update() -> None:
    sent, trained = pair()
    flipped = sign_flip(sent, trained, NAMES)
    for k in NAMES:
        torch.testing.assert_close(flipped[k] - sent[k], -(trained[k] - sent[k]))
        torch.testing.assert_close(sign_flip(sent, flipped, NAMES)[k], trained[k])
    exact_sent, exact_trained = {"w": torch.tensor([0.5, -2.0])}, {"w": torch.tensor([1.25, 3.0])}
    exact_flip = sign_flip(exact_sent, exact_trained, ["w"])
    assert torch.equal(exact_flip["w"], torch.tensor([-0.25, -7.0]))
    assert torch.equal(sign_flip(exact_sent, exact_flip, ["w"])["w"], exact_trained["w"])


def test_untouched_tensors_come_from_trained_and_inputs_stay() -> None:
    sent, trained = pair()
    before = {k: v.clone() for k, v in trained.items()}
    out = sign_flip(sent, trained, NAMES)
    assert torch.equal(out["bn.running_mean"], trained["bn.running_mean"])
    assert out["bn.num_batches_tracked"].dtype == torch.int64
    assert out["bn.num_batches_tracked"].item() == 17
    assert out["w"].dtype == torch.float32 and out["w"].shape == (20, 30)
    assert out["w"] is not trained["w"] and out["bn.running_mean"] is not trained["bn.running_mean"]
    assert all(torch.equal(trained[k], before[k]) for k in before)


def test_scale() -> None:
    sent, trained = pair()
    for k in NAMES:
        torch.testing.assert_close(scale(sent, trained, NAMES, 1.0)[k], trained[k])
        torch.testing.assert_close(scale(sent, trained, NAMES, 0.0)[k], sent[k])
        big = scale(sent, trained, NAMES, 10.0)[k] - sent[k]
        torch.testing.assert_close(big, 10.0 * (trained[k] - sent[k]), rtol=1e-4, atol=1e-5)


def test_random_update_has_honest_size_and_is_seeded() -> None:
    sent, trained = pair()
    out = random_update(sent, trained, NAMES, torch.Generator().manual_seed(3))
    again = random_update(sent, trained, NAMES, torch.Generator().manual_seed(3))
    other = random_update(sent, trained, NAMES, torch.Generator().manual_seed(4))
    honest, noise = trained["w"] - sent["w"], out["w"] - sent["w"]
    assert rms(noise) == pytest.approx(rms(honest), rel=0.15)
    corr = torch.corrcoef(torch.stack([honest.flatten(), noise.flatten()]))[0, 1].item()
    assert abs(corr) < 0.2  # no information about the honest update
    assert all(torch.equal(out[k], again[k]) for k in out)
    assert not torch.equal(out["w"], other["w"])
    assert out["empty"].shape == (0,)


def test_permute_labels_is_an_involution() -> None:
    y = torch.arange(10)
    flipped = permute_labels(y, 10)
    assert flipped.tolist() == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    assert torch.equal(permute_labels(flipped, 10), y)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 10\)"):
        permute_labels(torch.tensor([3, 10]), 10)


def test_malicious_clients_seeded_and_sized() -> None:
    chosen = malicious_clients(100, 0.2, seed=7)
    assert len(chosen) == 20 and chosen <= set(range(100))
    assert chosen == malicious_clients(100, 0.2, seed=7)
    assert chosen != malicious_clients(100, 0.2, seed=8)
    assert malicious_clients(10, 0.0, 1) == frozenset()
    assert malicious_clients(10, 1.0, 1) == frozenset(range(10))
    with pytest.raises(ValueError, match="share must be in"):
        malicious_clients(10, 1.5, 1)


def test_mismatch_names_the_key() -> None:
    sent, trained = pair()
    with pytest.raises(ValueError, match="shape mismatch for b"):
        scale({**sent, "b": torch.zeros(3)}, trained, NAMES, 2.0)
    with pytest.raises(ValueError, match="w is in the trained model"):
        sign_flip({"b": sent["b"]}, trained, NAMES)
    assert set(ATTACKS) >= {"sign_flip", "scale", "label_flip", "random", "inflate_count"}
