import gzip

import numpy as np
import pytest
import torch

from fedcore.data import ArrayDataset, DatasetError, load_idx_dir, load_npz
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


# ------------------------------------------------------------- compact (uint8) datasets
def _whole_split_reference(train_u8: np.ndarray, test_u8: np.ndarray):
    """How every split was normalised before datasets were kept compact: the whole split at
    once as float32, in place, with a (1,C,1,1) view (the reference the compact datasets
    must reproduce bit for bit)."""
    xtr = torch.from_numpy(np.ascontiguousarray(train_u8).copy()).float().div_(255.0)
    xte = torch.from_numpy(np.ascontiguousarray(test_u8).copy()).float().div_(255.0)
    mean = xtr.mean(dim=(0, 2, 3))
    std = xtr.std(dim=(0, 2, 3)).clamp_min(1e-6)
    view = (1, -1, 1, 1)
    xtr.sub_(mean.view(view)).div_(std.view(view))
    xte.sub_(mean.view(view)).div_(std.view(view))
    return xtr, xte, tuple(mean.tolist()), tuple(std.tolist())


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


def _check_compact_equals_reference(s, ref_train, ref_test, mean, std) -> None:
    assert s.train.mean == mean and s.train.std == std and s.test.mean == mean
    assert s.train.pixels is not None and s.train.pixels.dtype == torch.uint8
    assert _same(s.train.x, ref_train) and _same(s.test.x, ref_test)
    n = len(s.train)
    rng = np.random.default_rng(3)
    for idx in (
        np.sort(rng.choice(n, size=min(n, 37), replace=False)),
        rng.permutation(n)[:5],
        np.array([n - 1]),
    ):
        part = s.train.subset(idx)
        assert part.pixels is not None  # a compact split's subsets stay compact
        assert _same(part.x, ref_train[torch.as_tensor(idx)])
        assert _same(s.train[torch.as_tensor(idx)][0], ref_train[torch.as_tensor(idx)])
        assert _same(s.train.rows(idx), ref_train[torch.as_tensor(idx)])
    assert _same(s.train[n - 1][0], ref_train[n - 1]) and int(s.train[n - 1][1]) >= 0
    assert _same(s.test[3 : len(s.test)][0], ref_test[3:])
    assert s.train.input_shape == tuple(ref_train.shape[1:])


def test_compact_dataset_normalises_rows_exactly_as_the_whole_split(tmp_path):
    rng = np.random.default_rng(7)
    xtr = rng.integers(0, 256, (101, 3, 5, 7)).astype(np.uint8)
    xte = rng.integers(0, 256, (33, 3, 5, 7)).astype(np.uint8)
    np.savez(tmp_path / "tr.npz", x=xtr, y=np.arange(101) % 4)
    np.savez(tmp_path / "te.npz", x=xte, y=np.arange(33) % 4)
    s = load_npz(tmp_path / "tr.npz", tmp_path / "te.npz")
    _check_compact_equals_reference(s, *_whole_split_reference(xtr, xte))


def test_fashion_mnist_partitions_and_test_batches_equal_the_float32_split():
    """The partitions a federation hands its clients, and the server's batched evaluation of
    the test split, see exactly the values of the whole split normalised as float32."""
    from fedcore.config import load_config
    from fedcore.federation import build_federation
    from fedcore.models import build_model
    from fedcore.training import as_tensors, evaluate, iterate_batches

    assert FMNIST.is_dir(), "install with: apt-get install -y dataset-fashion-mnist"
    s = load_dataset("fashion-mnist")
    assert s.train.pixels is not None and s.test.pixels is not None
    xtr = s.train.pixels.numpy()
    xte = s.test.pixels.numpy()
    ref_train, ref_test, mean, std = _whole_split_reference(xtr, xte)
    _check_compact_equals_reference(s, ref_train, ref_test, mean, std)
    fed = build_federation(load_config(None, "").with_clients(10))
    for pid in (0, 4, 9):
        train, test = fed.client_datasets(pid)
        x, y = as_tensors(train)
        assert _same(x, ref_train[torch.as_tensor(fed.client_train[pid])])
        assert _same(test.x, ref_test[torch.as_tensor(fed.client_test[pid])])
        assert torch.equal(y, s.train.y[torch.as_tensor(fed.client_train[pid])])
    torch.manual_seed(0)
    model = build_model("cnn", 1, 10).eval()
    n = 2100  # two full batches and a partial one
    got = evaluate(model, s.test.subset(range(n)), batch_size=1024, num_classes=10)
    loss, correct = 0.0, 0
    with torch.no_grad():  # the evaluation as it ran on the float32 split
        for xb, yb, _ in iterate_batches(ref_test[:n], s.test.y[:n], 1024, None):
            logits = model(xb)
            loss += float(torch.nn.functional.cross_entropy(logits, yb, reduction="sum"))
            correct += int((logits.argmax(1) == yb).sum())
    assert got["loss"] == loss / n and got["accuracy"] == correct / n


def test_clients_and_evaluation_never_normalise_a_whole_split(monkeypatch, idx_dir):
    """A client's partition and the batched evaluation normalise only their own rows: the
    split's ``.x`` (every row as float32) is never asked for."""
    from fedcore.data import ArrayDataset
    from fedcore.losses import LocalData
    from fedcore.models import build_model
    from fedcore.training import evaluate

    s = load_idx_dir(idx_dir)
    full = len(s.train)

    def whole(self):
        assert len(self) < full, "a whole split was normalised"
        return self.rows(slice(None))

    monkeypatch.setattr(ArrayDataset, "x", property(whole))
    part = s.train.subset(np.arange(0, full, 3))
    data = LocalData.real(part)
    assert data.own_samples.x.dtype == torch.float32 and data.num_real == len(part)
    model = build_model("cnn", 1, 4)
    model.features[0] = torch.nn.Conv2d(1, 16, 5, padding=2, bias=False)  # 8x8 inputs
    model.classifier[1] = torch.nn.Linear(32 * 2 * 2, 256)
    ev = evaluate(model, s.train, batch_size=64, num_classes=4)
    assert 0 <= float(ev["accuracy"]) <= 1


def test_float_datasets_keep_their_tensor():
    x = torch.randn(6, 1, 2, 2)
    ds = ArrayDataset(x, torch.arange(6) % 2, (0.5,), (0.25,), ("a", "b"))
    assert ds.x is x and ds.pixels is None and torch.equal(ds[2][0], x[2])
    assert torch.equal(ds.subset(np.array([1, 3])).x, x[[1, 3]])
    with pytest.raises(DatasetError, match="uint8"):
        ArrayDataset.from_pixels(x, torch.zeros(6), (0.5,), (0.25,), ("a", "b"))


def test_a_client_process_imports_no_torchvision_nor_matplotlib():
    """What a ClientApp process does with data (import the app, build the default
    federation, take its partition) imports neither torchvision (about 100 MB) nor
    matplotlib: each is imported where it is used."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    code = (
        "import sys, client_app.app\n"
        "from fedcore.config import load_config\n"
        "from fedcore.federation import build_federation\n"
        "fed = build_federation(load_config(None, {}).with_clients(10))\n"
        "train, test = fed.client_datasets(3)\n"
        "assert train.pixels is not None and len(train) > 0\n"
        "print(sorted(m for m in ('torchvision', 'matplotlib') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
