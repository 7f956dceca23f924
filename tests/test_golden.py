"""The golden numbers (slow tier): README command 1's federation, 2 rounds of FedAvg and
zdas+scaffold through Flower in reproducible mode, per-round accuracy and loss and every
client's final accuracy asserted exactly against ``tests/golden/demo.json``.

The file is written by ``FEDZDA_REPRODUCIBLE=1 python -m benchmarks.golden --write``, which
also runs the core round loop and refuses to write when the two paths differ. A change
that must move these numbers rewrites the file in the same commit and says why.
"""

from __future__ import annotations

import json

import pytest

from benchmarks.golden import GOLDEN, METHODS, flower, numbers

pytestmark = [pytest.mark.e2e, pytest.mark.slow(seconds=135)]


@pytest.mark.parametrize("method", METHODS)
def test_demo_federation_gives_the_golden_numbers(tmp_path, monkeypatch, method):
    monkeypatch.setenv("FEDZDA_REPRODUCIBLE", "1")  # inherited by every process of the run
    golden = json.loads(GOLDEN.read_text())
    got = flower(method, tmp_path)
    assert got["platform"]["kind"] == "reproducible-avx2"
    assert numbers(got) == numbers(golden["methods"][method])
