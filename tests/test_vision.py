"""torchvision's datasets (from small local files made here), augmentation, grids, ResNet-18."""

import gzip
import pickle

import numpy as np
import pytest
import torch

from fedcore import vision
from fedcore.algorithms.fedavg import weighted_average
from fedcore.algorithms.zdas import ZdasConfig, zdas_round
from fedcore.config import ConfigError, load_config
from fedcore.data import DatasetError, DataSpec, load_idx_dir
from fedcore.datasets import load_dataset
from fedcore.losses import sgd_train
from fedcore.models import build_model
from fedcore.plots import save_image_grid
from fedcore.training import Samples, TrainConfig
from inversion import InversionConfig, OwnBanks
from inversion.engine import BNStatsLoss
from tests.conftest import FMNIST, write_idx

pytestmark = pytest.mark.skipif(not vision.available(), reason="torchvision does not import")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDZDA_CACHE", str(tmp_path / "cache"))


def _idx_set(d, names, n_train=40, n_test=12, classes=5, side=6, gz=True):
    rng = np.random.default_rng(0)
    d.mkdir(parents=True, exist_ok=True)
    for (img, lab), n in zip(names, (n_train, n_test), strict=True):
        write_idx(d / img, rng.integers(0, 256, (n, side, side)), gz=gz)
        write_idx(d / lab, np.arange(n) % classes, gz=gz)


MNIST_NAMES = [
    ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
]


def test_fashion_mnist_through_torchvision_equals_the_idx_reader():
    assert FMNIST.is_dir(), "install with: apt-get install -y dataset-fashion-mnist"
    tv = vision.load("fashion-mnist")
    own = load_idx_dir(FMNIST, tv.train.classes)
    assert torch.equal(tv.train.x, own.train.x) and torch.equal(tv.test.y, own.test.y)
    assert tv.train.classes[9] == "Ankle boot" and tv.train.mean == own.train.mean


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("kmnist", "KMNIST")])
def test_mnist_family_from_a_torchvision_root_plain_or_gzipped(tmp_path, name, folder):
    _idx_set(tmp_path / folder / "raw", MNIST_NAMES, gz=name == "mnist")
    s = vision.load(name, str(tmp_path))
    assert s.train.x.shape == (40, 1, 6, 6) and s.test.x.shape == (12, 1, 6, 6)
    assert s.train.y.tolist()[:6] == [0, 1, 2, 3, 4, 0] and len(s.train.classes) == 10
    cached = list((tmp_path / "cache").rglob(f"{folder}-*"))
    assert bool(cached) == (name == "mnist")  # plain files in a torchvision root: no copy


def test_emnist_letters_labels_start_at_zero(tmp_path):
    names = [
        (f"emnist-letters-{s}-images-idx3-ubyte", f"emnist-letters-{s}-labels-idx1-ubyte")
        for s in ("train", "test")
    ]
    _idx_set(tmp_path / "EMNIST" / "raw", names, classes=26)
    for name in names:  # real EMNIST labels letters 1..26
        path = tmp_path / "EMNIST" / "raw" / f"{name[1]}.gz"
        lab = np.frombuffer(gzip.decompress(path.read_bytes())[8:], np.uint8)
        write_idx(path.with_suffix(""), lab + 1)
    s = load_dataset("emnist-letters", str(tmp_path))
    assert s.train.y.min() == 0 and s.train.y.max() == 25 and s.train.classes[:2] == ("a", "b")


def test_missing_dataset_says_where_its_files_go(tmp_path):
    with pytest.raises(DatasetError, match=r"MNIST/raw/"):
        vision.load("mnist", str(tmp_path / "nothing"))
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"missing file .*train-images-idx3-ubyte"):
        vision.load("mnist", str(tmp_path))
    with pytest.raises(DatasetError, match=r"cifar-10-batches-py"):
        vision.load("cifar10", str(tmp_path))
    with pytest.raises(DatasetError, match=r"train/<class>"):
        vision.load("imagefolder", str(tmp_path))


def test_truncated_raw_file_is_named(tmp_path):
    _idx_set(tmp_path / "MNIST" / "raw", MNIST_NAMES, gz=False)
    f = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-7])
    with pytest.raises(DatasetError, match="cannot read mnist"):
        vision.load("mnist", str(tmp_path))


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_python_versions(tmp_path, monkeypatch, name):
    # files made here cannot carry the real checksums
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda *a, **k: True)
    rng = np.random.default_rng(2)
    if name == "cifar10":
        d, key = tmp_path / "cifar-10-batches-py", "labels"
        files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        meta = ("batches.meta", {"label_names": [f"c{i}" for i in range(10)]})
    else:
        d, files, key = tmp_path / "cifar-100-python", ["train", "test"], "fine_labels"
        meta = ("meta", {"fine_label_names": [f"c{i}" for i in range(100)]})
    d.mkdir()
    for f in files:
        obj = {"data": rng.integers(0, 256, (7, 3072)).astype(np.uint8), key: list(range(7))}
        (d / f).write_bytes(pickle.dumps(obj))
    (d / meta[0]).write_bytes(pickle.dumps(meta[1]))
    s = vision.load(name, str(d))  # the python folder itself, or its parent, both work
    assert s.train.x.shape[1:] == (3, 32, 32) and s.test.y.tolist() == list(range(7))
    assert len(s.train.classes) == (10 if name == "cifar10" else 100)


def test_svhn_mat_files(tmp_path, monkeypatch):
    sio = pytest.importorskip("scipy.io")
    monkeypatch.setattr("torchvision.datasets.svhn.check_integrity", lambda *a, **k: True)
    rng = np.random.default_rng(3)
    for split, n in (("train", 9), ("test", 4)):
        x = rng.integers(0, 256, (32, 32, 3, n)).astype(np.uint8)
        sio.savemat(tmp_path / f"{split}_32x32.mat", {"X": x, "y": np.arange(1, n + 1) % 10 + 1})
    s = vision.load("svhn", str(tmp_path))
    assert s.train.x.shape == (9, 3, 32, 32) and s.train.y.max() <= 9


def test_imagefolder_and_mismatched_sizes(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(4)
    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(3):
                arr = rng.integers(0, 256, (10, 12, 3)).astype(np.uint8)
                Image.fromarray(arr).save(tmp_path / split / cls / f"{i}.png")
    s = vision.load("imagefolder", str(tmp_path))
    assert s.train.x.shape == (6, 3, 10, 12) and s.train.classes == ("cat", "dog")
    Image.fromarray(np.zeros((9, 9, 3), np.uint8)).save(tmp_path / "test" / "dog" / "odd.png")
    with pytest.raises(DatasetError, match=r"odd.png is 9x9 .* resize"):
        vision.load("imagefolder", str(tmp_path))


def test_crop_flip_augmentation_draws_per_image():
    aug = vision.augmenter("crop-flip", (3, 8, 8))
    x = torch.randn(1, 3, 8, 8).expand(16, 3, 8, 8).contiguous()  # one image, 16 times
    torch.manual_seed(0)
    a = aug(x)
    torch.manual_seed(0)
    assert a.shape == x.shape and torch.equal(a, aug(x))  # seeded by torch's generator
    distinct = {a[i].numpy().tobytes() for i in range(16)}
    assert len(distinct) > 1, "one transform shared by the whole batch"
    m = build_model("cnn", 1, 4)
    data = Samples(torch.randn(64, 1, 28, 28), torch.arange(64) % 4)
    stats = sgd_train(m, data, TrainConfig(augment="crop-flip"), seed=0)
    assert stats.steps == 2 and np.isfinite(stats.loss)


def test_grid_tiles_the_same_with_and_without_torchvision(tmp_path, monkeypatch):
    imgs = torch.rand(5, 1, 4, 4)
    tv = vision.tile(imgs, 3)
    monkeypatch.setattr(vision, "available", lambda: False)
    own = vision.tile(imgs, 3)
    assert np.allclose(tv[..., :1], own) and tv.shape[:2] == own.shape[:2] == (14, 20)
    x = np.random.default_rng(0).normal(size=(12, 1, 6, 6)).astype(np.float32)
    fig = save_image_grid(
        x, np.arange(12) % 3, ["a", "b", "c"], (0.5,), (0.25,), tmp_path / "g.png"
    )
    assert (tmp_path / "g.png").stat().st_size > 500
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]  # a row per class
    grid = np.atleast_3d(np.asarray(ax.images[0].get_array()))[..., 0]  # grey or RGB
    assert grid.shape == (3 * 8 + 2, 8 * 8 + 2)  # 3 rows of 8 (6 px and a 2 px border)
    shown = np.clip(x[:, 0] * 0.25 + 0.5, 0, 1)  # un-normalised
    assert np.allclose(grid[2:8, 2:8], shown[0]) and np.allclose(grid[2:8, 10:16], shown[3])
    assert np.allclose(grid[10:16, 2:8], shown[1])  # class b's first image opens row 2
    assert np.allclose(grid[2:8, 34:40], 1)  # class a has 4 images: blanks fill the row


def test_resnet18_is_inverted_and_finetuned_like_the_others():
    net = build_model("resnet18", 3, 10)
    assert net.conv1.kernel_size == (3, 3) and isinstance(net.maxpool, torch.nn.Identity)
    hooks = BNStatsLoss(net, 10.0)
    assert len(hooks.layers) == 20  # every BatchNorm of ResNet-18 is matched
    hooks.remove()
    torch.manual_seed(0)
    states = []
    for k in range(2):
        m = build_model("resnet18", 3, 10)
        data = Samples(torch.randn(16, 3, 16, 16), torch.arange(16) % 10)
        sgd_train(m, data, TrainConfig(batch_size=8), seed=k)
        states.append({n: v.clone() for n, v in m.state_dict().items()})
    avg = weighted_average(states, [1, 1])
    spec = DataSpec((3, 16, 16), (0.5,) * 3, (0.25,) * 3, tuple(map(str, range(10))))
    cfg = ZdasConfig(
        samples_per_client=4, finetune_epochs=1, inversion=InversionConfig(steps=3, batch_size=4)
    )
    clients = [(0, states[0], None), (1, states[1], None)]
    out = zdas_round(lambda: build_model("resnet18", 3, 10), avg, clients, cfg, OwnBanks(), 1, spec)
    assert out.x.shape == (8, 3, 16, 16)
    moved = [k for k in avg if "running" not in k and not torch.equal(avg[k], out.state[k])]
    assert moved, "fine-tuning changed no weight"


def test_config_names_what_needs_torchvision_or_a_path(monkeypatch):
    with pytest.raises(ConfigError, match=r"data.path: dataset 'cifar100' is read from a local"):
        load_config(overrides="data.dataset=cifar100")
    monkeypatch.setattr(vision, "available", lambda: False)
    with pytest.raises(ConfigError) as e:
        overrides = "data.dataset=mnist data.path=/x model.name=resnet18 train.augment=crop-flip"
        load_config(overrides=overrides)
    assert "data.dataset, model.name, train.augment: torchvision does not import" in str(e.value)
    load_config(overrides="data.dataset=fashion-mnist")  # the CPU-only path reads Fashion-MNIST


def test_fashion_mnist_from_a_torchvision_root_is_read_without_torchvision(tmp_path):
    """``load_dataset`` reads Fashion-MNIST's IDX files itself, wherever torchvision would
    look for them (``root/FashionMNIST/raw``), and gets exactly torchvision's dataset."""
    _idx_set(tmp_path / "FashionMNIST" / "raw", MNIST_NAMES, classes=10, gz=False)
    own = load_dataset.__wrapped__("fashion-mnist", str(tmp_path))
    tv = vision.load("fashion-mnist", str(tmp_path))
    assert torch.equal(own.train.x, tv.train.x) and torch.equal(own.test.x, tv.test.x)
    assert torch.equal(own.train.y, tv.train.y) and own.train.classes == tv.train.classes
    assert own.train.mean == tv.train.mean and own.train.std == tv.train.std
