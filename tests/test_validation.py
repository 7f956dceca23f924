"""Reply checks that keep bad client updates out of the average."""

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, MetricRecord, RecordDict

from fedcore.models import build_model
from fedcore.protocol import check_arrays, check_metrics

REF = build_model("cnn", 1, 10).state_dict()


def reply(state=None, **metrics) -> RecordDict:
    metrics = {"num-examples": 100, "partition-id": 0} | metrics
    content = RecordDict({"metrics": MetricRecord(metrics)})
    if state is not None:
        content["arrays"] = ArrayRecord({k: v.clone() for k, v in state.items()})
    return content


def test_good_reply_passes():
    r = reply(REF)
    assert check_metrics(r, ("num-examples", "partition-id"), 1000) is None
    assert check_arrays(r, REF) is None


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda s: s.update({"classifier.3.bias": torch.full((10,), float("nan"))}), "NaN"),
        (lambda s: s.update({"classifier.3.bias": torch.full((10,), float("inf"))}), "NaN or Inf"),
        (lambda s: s.update({"classifier.3.bias": torch.zeros(11)}), "shape"),
        (lambda s: s.update({"classifier.3.bias": torch.zeros(10, dtype=torch.float64)}), "dtype"),
        (lambda s: s.pop("classifier.3.bias"), "missing"),
        (lambda s: s.update({"extra.weight": torch.zeros(1)}), "extra"),
    ],
)
def test_bad_arrays_are_refused(mutate, needle):
    state = {k: v.clone() for k, v in REF.items()}
    mutate(state)
    assert needle in (check_arrays(reply(state), REF) or "")


@pytest.mark.parametrize(
    ("metrics", "needle"),
    [
        ({"num-examples": 0}, "absurd"),
        ({"num-examples": -5}, "absurd"),
        ({"num-examples": 10**12}, "absurd"),
        ({"num-examples": float(np.nan)}, "absurd"),
    ],
)
def test_absurd_example_counts_are_refused(metrics, needle):
    assert needle in check_metrics(reply(REF, **metrics), ("num-examples",), 60000)


def test_missing_metrics_are_refused():
    r = RecordDict({"metrics": MetricRecord({"num-examples": 5})})
    assert "partition-id" in check_metrics(r, ("num-examples", "partition-id"), 100)
    assert "no MetricRecord" in check_metrics(RecordDict({}), ("num-examples",), 100)
