import gzip

import numpy as np
import pytest
import torch

from fedcore.data import DatasetError, load_idx_dir, load_npz
from fedcore.datasets import load_dataset
from tests.conftest import FMNIST, write_idx


def test_idx_reader_shapes_labels_and_normalisation(idx_dir):
    s = load_idx_dir(idx_dir)
    assert s.train.x.shape == (200, 1, 8, 8) and s.test.x.shape == (50, 1, 8, 8)
    assert s.train.x.dtype == torch.float32 and s.train.y.dtype == torch.int64
    assert s.train.num_classes == 4
    assert s.train.y.tolist()[:5] == [0, 1, 2, 3, 0]
    assert abs(float(s.train.x.mean())) < 1e-4 and abs(float(s.train.x.std()) - 1) < 1e-2


def test_idx_missing_file_names_path_and_fix(idx_dir):
    (idx_dir / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte.*apt-get install"):
        load_idx_dir(idx_dir)


def test_idx_bad_magic_and_truncation(idx_dir):
    (idx_dir / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x09\x01" + bytes(8))
    with pytest.raises(DatasetError, match="bad magic"):
        load_idx_dir(idx_dir)
    write_idx(idx_dir / "train-labels-idx1-ubyte", np.zeros(200), gz=False)
    raw = gzip.decompress((idx_dir / "train-images-idx3-ubyte.gz").read_bytes())
    (idx_dir / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw[:-10]))
    with pytest.raises(DatasetError, match="truncated"):
        load_idx_dir(idx_dir)


def test_missing_directory_mentions_debian_package(tmp_path):
    with pytest.raises(DatasetError, match="dataset-fashion-mnist"):
        load_idx_dir(tmp_path / "nope")


def test_npz_reader_accepts_float_and_uint8(tmp_path):
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "tr.npz", x=rng.random((30, 3, 4, 4)), y=np.arange(30) % 3)
    np.savez(
        tmp_path / "te.npz",
        x=rng.integers(0, 256, (9, 3, 4, 4)).astype(np.uint8),
        y=np.arange(9) % 3,
    )
    s = load_npz(tmp_path / "tr.npz", tmp_path / "te.npz")
    assert s.train.x.shape == (30, 3, 4, 4) and s.test.y.tolist() == [0, 1, 2] * 3
    np.savez(tmp_path / "bad.npz", images=np.zeros((2, 4, 4)))
    with pytest.raises(DatasetError, match="'x'"):
        load_npz(tmp_path / "bad.npz", tmp_path / "te.npz")


def test_real_fashion_mnist():
    assert FMNIST.is_dir(), "install with: apt-get install -y dataset-fashion-mnist"
    s = load_dataset("fashion-mnist")
    assert len(s.train) == 60000 and len(s.test) == 10000
    assert s.train.input_shape == (1, 28, 28)
    assert torch.bincount(s.train.y).tolist() == [6000] * 10
    assert s.train.classes[9] == "Ankle boot"


def test_unknown_dataset_name():
    with pytest.raises(DatasetError, match="choose one of"):
        load_dataset("imagenet")
