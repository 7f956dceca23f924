"""Robust aggregation: median, trimmed mean, (Multi-)Krum and count clipping."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from fedcore.robust import (
    clip_counts,
    coordinate_median,
    krum_scores,
    median_cap,
    multi_krum,
    trimmed_mean,
)
from fedcore.types import StateDict


def model(value: float, steps: int = 5) -> StateDict:
    """A tiny model: a float32 weight full of ``value`` and an integer BatchNorm counter."""
    return {
        "w": torch.full((2, 3), value, dtype=torch.float32),
        "bn.num_batches_tracked": torch.tensor(steps, dtype=torch.int64),
    }


def plain_mean(states: list[StateDict], key: str) -> torch.Tensor:
    return torch.stack([s[key].double() for s in states]).mean(dim=0)


def test_median_and_trimmed_mean_ignore_one_huge_client() -> None:
    states = [model(v) for v in (1.0, 2.0, 3.0, 4.0)] + [model(1e6)]
    assert plain_mean(states, "w")[0, 0].item() > 1e5  # the mean is pulled far
    median = coordinate_median(states)
    assert torch.equal(median["w"], torch.full((2, 3), 3.0))
    trimmed = trimmed_mean(states, trim=0.2)  # k = 1: drops 1.0 and 1e6
    assert torch.equal(trimmed["w"], torch.full((2, 3), 3.0))
    assert median["w"].dtype == trimmed["w"].dtype == torch.float32


def test_trim_zero_is_plain_mean() -> None:
    gen = torch.Generator().manual_seed(0)
    states = [{"w": torch.randn(4, 5, generator=gen, dtype=torch.float64)} for _ in range(6)]
    torch.testing.assert_close(trimmed_mean(states, 0.0)["w"], plain_mean(states, "w"))


def test_median_of_even_count_is_the_midpoint() -> None:
    states = [model(v) for v in (1.0, 10.0, 2.0, 4.0)]
    assert torch.equal(coordinate_median(states)["w"], torch.full((2, 3), 3.0))


def test_integer_buffers_get_rounded_median_and_stay_integer() -> None:
    states = [model(0.0, steps) for steps in (3, 100_000, 5, 4, 6)]
    for out in (
        coordinate_median(states),
        trimmed_mean(states, 0.0),
        multi_krum(states, 1, 2, ["w"], [1.0] * 5)[0],
    ):
        counter = out["bn.num_batches_tracked"]
        assert counter.dtype == torch.int64 and counter.item() == 5
    odd = coordinate_median([model(0.0, 3), model(0.0, 6)])["bn.num_batches_tracked"]
    assert odd.item() == 4  # midpoint 4.5 rounds half to even


def test_krum_picks_honest_states_and_excludes_outliers() -> None:
    gen = torch.Generator().manual_seed(1)
    honest = [{"w": torch.randn(10, generator=gen) * 0.1} for _ in range(5)]
    outliers = [{"w": torch.full((10,), 50.0)}, {"w": torch.full((10,), -50.0)}]
    states = [honest[0], outliers[0], *honest[1:3], outliers[1], *honest[3:]]  # outliers: 1, 4
    scores = krum_scores(states, num_byzantine=2, names=["w"])
    assert scores.shape == (7,)
    assert scores[1] > 100 * scores[0] and scores[4] > 100 * scores[0]
    _, (best,) = multi_krum(states, 2, 1, ["w"], [1.0] * 7)
    assert best not in (1, 4)
    avg, picked = multi_krum(states, 2, 5, ["w"], [1.0] * 7)
    assert picked == [0, 2, 3, 5, 6]
    torch.testing.assert_close(avg["w"], torch.stack([s["w"] for s in honest]).mean(dim=0))


def test_krum_score_is_sum_of_nearest_squared_distances() -> None:
    states = [{"w": torch.tensor([float(x)])} for x in (0, 1, 3, 6, 10)]  # n=5, f=1: 2 nearest
    assert krum_scores(states, 1, ["w"]).tolist() == [1 + 9, 1 + 4, 4 + 9, 9 + 16, 16 + 49]


def test_multi_krum_weights_and_stable_ties() -> None:
    states = [{"w": torch.tensor([0.0])}] * 2 + [{"w": torch.tensor([1.0])}] * 3
    avg, picked = multi_krum(states, 1, 2, ["w"], [1.0] * 5)
    assert picked == [2, 3]  # tied lowest scores (0.0 for 2, 3, 4): lowest indices win
    avg, picked = multi_krum(states, 0, 5, ["w"], [3.0, 1.0, 0.0, 0.0, 0.0])
    assert picked == [0, 1, 2, 3, 4] and avg["w"].item() == 0.0
    avg, _ = multi_krum(states, 0, 5, ["w"], [0.0, 1.0, 1.0, 1.0, 1.0])
    assert avg["w"].item() == pytest.approx(0.75)


def test_clip_counts_caps_an_inflated_count() -> None:
    counts = [100, 120, 90, 1_000_000]
    cap = median_cap(counts, factor=2.0)
    assert cap == 2.0 * 110
    assert clip_counts(counts, cap) == [100.0, 120.0, 90.0, 220.0]
    assert median_cap([5, 1, 3], 1.0) == 3.0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: coordinate_median([]), "zero models"),
        (lambda: trimmed_mean([model(1.0)] * 3, 0.5), "trim must be in"),
        (lambda: trimmed_mean([model(1.0)] * 3, -0.1), "trim must be in"),
        (lambda: coordinate_median([model(1.0), {"w": torch.zeros(2, 3)}]), "num_batches"),
        (lambda: coordinate_median([model(1.0), {**model(1.0), "w": torch.zeros(3)}]), "for w"),
        (lambda: krum_scores([model(1.0)] * 4, 1, ["w"]), "n=4, f=1"),
        (lambda: krum_scores([model(1.0)] * 5, 1, ["v"]), "'v'"),
        (lambda: multi_krum([model(1.0)] * 5, 1, 5, ["w"], [1.0] * 5), "keep must be"),
        (lambda: multi_krum([model(1.0)] * 5, 1, 2, ["w"], [1.0] * 4), "4 weights"),
        (lambda: clip_counts([1, 2], 0.0), "cap must be positive"),
        (lambda: median_cap([], 2.0), "zero counts"),
    ],
)
def test_errors_name_the_problem(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
