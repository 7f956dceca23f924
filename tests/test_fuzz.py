"""Property-based tests of the inputs a user controls: the configuration and the data files.

Every input is either accepted or refused with one clear error (ConfigError naming the key,
DatasetError naming the file); never a traceback from deep inside, never a silent run.
"""

import gzip
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fedcore.config import ConfigError, ExperimentConfig, load_config, parse_overrides
from fedcore.data import DatasetError, _read_idx, load_npz
from fedcore.schema import flatten

KEYS = sorted(flatten(ExperimentConfig()))
VALUES = st.one_of(
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
KEY = st.one_of(
    st.sampled_from(KEYS), st.text(min_size=1, max_size=12).filter(lambda k: "." not in k)
)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _nested(flat: dict) -> dict:
    out: dict = {}
    for key, value in flat.items():
        *head, last = key.split(".")
        node = out
        for part in head:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                return out
        node[last] = value
    return out


@FUZZ
@given(st.dictionaries(KEY, VALUES, max_size=6))
def test_any_configuration_is_accepted_or_refused_with_its_keys(flat):
    try:
        cfg = load_config(overrides=_nested(flat))
    except ConfigError as e:
        text = str(e)
        assert text.startswith("invalid configuration:")
        # every problem line names a dotted key of the configuration
        for line in text.splitlines()[1:]:
            assert line.startswith("  - ") and ":" in line
        return
    assert isinstance(cfg, ExperimentConfig)
    for key, value in flatten(cfg).items():  # accepted: nothing is NaN or infinite
        if isinstance(value, float):
            assert np.isfinite(value), key


@FUZZ
@given(st.text(max_size=40))
def test_any_override_string_is_parsed_or_refused(text):
    try:
        load_config(overrides=text)
    except ConfigError:
        pass
    else:
        parse_overrides(text)  # accepted strings parse on their own too


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf"])
def test_non_finite_numbers_are_refused_by_key(bad):
    with pytest.raises(ConfigError, match=rf"train\.lr: must be a finite number, got {bad}"):
        load_config(overrides=f"train.lr={bad}")


def test_every_problem_is_listed_at_once():
    with pytest.raises(ConfigError) as e:
        load_config(overrides="rounds=0 train.lr=nan data.bogus=2 zdac.budget=x")
    text = str(e.value)
    for key in ("rounds:", "train.lr:", "data.bogus:", "zdac.budget:"):
        assert key in text


DTYPES = st.sampled_from([np.uint8, np.int16, np.int64, np.float32, np.float64, np.bool_])


@st.composite
def npz_arrays(draw):
    n = draw(st.integers(0, 4))
    xshape = draw(st.sampled_from([(n, 3, 3), (n, 1, 3, 3), (n, 3), (n, 2, 3, 3, 1)]))
    x = draw(hnp.arrays(DTYPES, xshape, elements=None))
    y = draw(hnp.arrays(DTYPES, (draw(st.sampled_from([n, n + 1])),), elements=None))
    return x, y


@settings(max_examples=120, deadline=None)
@given(npz_arrays(), npz_arrays())
def test_any_npz_is_read_or_refused_with_its_file(train, test):
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp) / "train.npz", Path(tmp) / "test.npz"]
        for path, (x, y) in zip(paths, (train, test), strict=True):
            np.savez(path, x=x, y=y)
        try:
            s = load_npz(*paths)
        except DatasetError as e:
            assert str(paths[0]) in str(e) or str(paths[1]) in str(e)
            return
    for split in (s.train, s.test):
        assert split.x.isfinite().all() and (split.y >= 0).all() and len(split.y) > 0
        assert split.y.max() < len(split.classes)


def test_npz_cases_named_in_the_issue(tmp_path):
    good_x, good_y = np.zeros((4, 3, 3), np.uint8), np.array([0, 1, 0, 1])
    np.savez(tmp_path / "ok.npz", x=good_x, y=good_y)
    cases = {
        "NaN": dict(x=np.full((4, 3, 3), np.nan), y=good_y),
        "negative labels": dict(x=good_x, y=np.array([0, -1, 0, 1])),
        "labels must be integers": dict(x=good_x, y=np.array([0.0, 1.5, 0, 1])),
        "not N images": dict(x=np.zeros((4, 3)), y=good_y),
        "not numbers": dict(x=np.array([["a"] * 3] * 4 * 3).reshape(4, 3, 3), y=good_y),
        "must lie in": dict(x=np.full((4, 3, 3), 2.0), y=good_y),
    }
    for match, arrays in cases.items():
        np.savez(tmp_path / "bad.npz", **arrays)
        with pytest.raises(DatasetError, match=match):
            load_npz(tmp_path / "bad.npz", tmp_path / "ok.npz")
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(DatasetError, match="empty.npz"):
        load_npz(tmp_path / "empty.npz", tmp_path / "ok.npz")
    np.savez(tmp_path / "big.npz", x=good_x, y=np.array([0, 1, 0, 7]))
    with pytest.raises(DatasetError, match="not a class of the train split"):
        load_npz(tmp_path / "ok.npz", tmp_path / "big.npz")


@FUZZ
@given(st.binary(max_size=64), st.booleans())
def test_any_idx_bytes_are_read_or_refused(raw, gz):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("f.gz" if gz else "f")
        path.write_bytes(raw)
        try:
            arr = _read_idx(path, "hint")
        except DatasetError as e:
            assert str(path) in str(e)
            return
    assert arr.dtype == np.uint8


@FUZZ
@given(st.integers(1, 30))
def test_truncated_idx_is_refused(cut):
    arr = np.arange(2 * 3 * 5, dtype=np.uint8).reshape(2, 3, 5)
    raw = bytes([0, 0, 8, 3]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    raw += arr.tobytes()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.gz"
        path.write_bytes(gzip.compress(raw[:-cut]))
        with pytest.raises(DatasetError, match="truncated"):
            _read_idx(path, "hint")
