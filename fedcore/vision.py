"""Everything this project takes from torchvision: datasets, augmentation, grids, ResNet-18.

torchvision is imported lazily, here only, so the core also runs on a torch build without a
matching torchvision (the documented CPU-only path): then Fashion-MNIST is read by
:func:`fedcore.data.load_idx_dir`, grids are tiled with numpy, and asking for anything else
here is one :class:`VisionError` naming the fix.

Datasets are read with ``download=False`` from a local root in torchvision's own layout and
converted once to compact :class:`fedcore.data.Splits` (uint8 images, normalised on access).
Fashion-MNIST is read by :func:`fedcore.data.load_idx_dir` instead (see
:func:`fedcore.datasets.load_dataset`); :func:`load` still reads it with torchvision.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fedcore.data import FASHION_MNIST_DIR, DatasetError, Splits, normalise_u8

SETUP_HINT = (
    "run `bash scripts/setup.sh` (installs torch 2.14.1 + torchvision 0.29.1), or "
    "`pip install torchvision` matching your torch"
)
MNIST_LIKE = {"fashion-mnist": "FashionMNIST", "mnist": "MNIST", "kmnist": "KMNIST"}
EMNIST_SPLITS = ("balanced", "byclass", "bymerge", "digits", "letters", "mnist")
DATASETS = (
    *MNIST_LIKE,
    *(f"emnist-{s}" for s in EMNIST_SPLITS),
    "cifar10",
    "cifar100",
    "svhn",
    "imagefolder",
)
AUGMENTATIONS = ("none", "crop-flip")


class VisionError(RuntimeError):
    """torchvision (or a package one of its readers needs) is missing; says how to get it."""


def available() -> bool:
    """Whether torchvision imports beside this torch."""
    try:
        import torchvision  # noqa: F401
    except Exception:  # an ImportError, or a torchvision built for another torch
        return False
    return True


def _tv(what: str) -> Any:
    try:
        import torchvision
    except Exception as e:
        raise VisionError(
            f"{what} needs torchvision ({type(e).__name__}: {e}); {SETUP_HINT}"
        ) from e
    return torchvision


def cache_dir() -> Path:
    """Where prepared dataset roots live: ``$FEDZDA_CACHE`` or ``~/.cache/fedzda``."""
    return Path(os.environ.get("FEDZDA_CACHE") or Path.home() / ".cache" / "fedzda")


# ------------------------------------------------------------------------------ datasets
def _idx_names() -> list[str]:
    return _pairs("{}-{}", ("train", "t10k"))


def _pairs(pattern: str, splits: tuple[str, str]) -> list[str]:
    """The four IDX file names (images, labels per split) of one data set."""
    kinds = (("images", 3), ("labels", 1))
    return [pattern.format(s, f"{k}-idx{d}-ubyte") for s in splits for k, d in kinds]


def prepare_raw(source: Path, folder: str, names: list[str]) -> Path:
    """A torchvision root whose ``folder/raw`` holds ``names`` uncompressed, made once in the
    cache from ``source`` (files there plain or ``.gz``). Returns the root."""
    key = hashlib.sha1(str(source.resolve()).encode()).hexdigest()[:10]
    root = cache_dir() / "torchvision" / f"{folder}-{key}"
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in names:
        dest = raw / name
        plain, packed = source / name, source / f"{name}.gz"
        if dest.is_file() and dest.stat().st_mtime >= max(
            (p.stat().st_mtime for p in (plain, packed) if p.is_file()), default=0
        ):
            continue
        tmp = dest.with_suffix(f".tmp{os.getpid()}")
        try:
            if plain.is_file():
                shutil.copyfile(plain, tmp)
            elif packed.is_file():
                with gzip.open(packed, "rb") as f, open(tmp, "wb") as out:
                    shutil.copyfileobj(f, out)
            else:
                raise DatasetError(
                    f"missing file {plain}[.gz]: {folder} needs {', '.join(names)} there"
                )
        except (OSError, EOFError, zlib.error) as e:
            tmp.unlink(missing_ok=True)
            raise DatasetError(f"cannot read {packed if packed.is_file() else plain}: {e}") from e
        os.replace(tmp, dest)
    return root


def _mnist_like(tv: Any, name: str, path: str) -> tuple[list, tuple[str, ...]]:
    """Train and test (images uint8 N,1,H,W; labels) of an MNIST-format torchvision set."""
    if name.startswith("emnist-"):
        split = name.removeprefix("emnist-")
        folder, kwargs = "EMNIST", {"split": split}
        names = _pairs(f"emnist-{split}-{{}}-{{}}", ("train", "test"))
        cls = tv.datasets.EMNIST
    else:
        folder, kwargs, names = MNIST_LIKE[name], {}, _idx_names()
        cls = getattr(tv.datasets, folder)
    given = Path(path or (FASHION_MNIST_DIR if name == "fashion-mnist" else ""))
    if not path and name != "fashion-mnist":
        raise DatasetError(f"data.path: set it to the directory holding {folder}/raw/ for {name}")
    # an IDX directory (the Debian package's), a torchvision root, or a root holding .gz files
    source = given / folder / "raw" if (given / folder / "raw").is_dir() else given
    if not source.is_dir():
        raise DatasetError(
            f"dataset directory {given} does not exist: put {', '.join(names)} (plain or .gz) "
            f"in {given}/{folder}/raw/"
            + (" or `apt-get install -y dataset-fashion-mnist`" if name == "fashion-mnist" else "")
        )
    if all((given / folder / "raw" / n).is_file() for n in names):
        root = given  # a torchvision root with the files uncompressed: read in place
    else:
        root = prepare_raw(source, folder, names)
    splits = []
    for train in (True, False):
        try:
            ds = cls(str(root), train=train, download=False, **kwargs)
        except (RuntimeError, ValueError, TypeError, OSError) as e:
            raise DatasetError(f"cannot read {name} from {source}: {e}") from e
        x, y = ds.data.numpy()[:, None], ds.targets.numpy()
        if name == "emnist-letters":  # labels 1..26; class 0 ('N/A') never occurs
            y = y - 1
        splits.append((x, y))
    classes = tuple(ds.classes[1:] if name == "emnist-letters" else ds.classes)
    return splits, classes


def _cifar(tv: Any, name: str, path: str) -> tuple[list, tuple[str, ...]]:
    cls, folder = (
        (tv.datasets.CIFAR10, "cifar-10-batches-py")
        if name == "cifar10"
        else (tv.datasets.CIFAR100, "cifar-100-python")
    )
    given = Path(path)
    root = given.parent if given.name == folder else given
    splits = []
    for train in (True, False):
        try:
            ds = cls(str(root), train=train, download=False)
        except (RuntimeError, OSError, ValueError, KeyError) as e:
            raise DatasetError(
                f"cannot read {name} under {root}: {e}. Put the python version's files in "
                f"{root / folder}/ (torchvision's layout; nothing is downloaded)"
            ) from e
        splits.append((np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)), np.asarray(ds.targets)))
    return splits, tuple(ds.classes)


def _svhn(tv: Any, path: str) -> tuple[list, tuple[str, ...]]:
    splits = []
    for split in ("train", "test"):
        try:
            ds = tv.datasets.SVHN(path, split=split, download=False)
        except ImportError as e:
            raise VisionError(f"svhn reads .mat files with scipy: `pip install scipy` ({e})") from e
        except (RuntimeError, OSError, ValueError, KeyError) as e:
            raise DatasetError(
                f"cannot read svhn under {path}: {e}. Put train_32x32.mat and test_32x32.mat "
                f"in {path}/ (nothing is downloaded)"
            ) from e
        splits.append((ds.data, ds.labels))
    return splits, tuple(map(str, range(10)))


def _imagefolder(tv: Any, path: str) -> tuple[list, tuple[str, ...]]:
    """``path/train/<class>/*`` and ``path/test/<class>/*``, RGB, all of one size."""
    splits, classes, shape = [], None, None
    for split in ("train", "test"):
        d = Path(path) / split
        try:
            ds = tv.datasets.ImageFolder(str(d))
        except (FileNotFoundError, OSError) as e:
            raise DatasetError(
                f"cannot read an image folder at {d}: {e}. Expected {path}/train/<class>/<image> "
                f"and {path}/test/<class>/<image>"
            ) from e
        if classes is not None and ds.classes != list(classes):
            raise DatasetError(f"{d}: classes {ds.classes} differ from train's {list(classes)}")
        classes = tuple(ds.classes)
        xs = []
        for file, _ in ds.samples:
            try:
                img = np.asarray(ds.loader(file)).transpose(2, 0, 1)
            except OSError as e:
                raise DatasetError(f"cannot read image {file}: {e}") from e
            shape = shape or img.shape
            if img.shape != shape:
                raise DatasetError(
                    f"{file} is {img.shape[2]}x{img.shape[1]} but the first image is "
                    f"{shape[2]}x{shape[1]}: resize every image to one size"
                )
            xs.append(img)
        splits.append((np.stack(xs), np.asarray(ds.targets)))
    return splits, classes or ()


def load(name: str, path: str = "") -> Splits:
    """Read dataset ``name`` (one of :data:`DATASETS`) with torchvision, never downloading."""
    tv = _tv(f"dataset {name!r}")
    if name in MNIST_LIKE or name.startswith("emnist-"):
        (train, test), classes = _mnist_like(tv, name, path)
    elif name in ("cifar10", "cifar100", "svhn", "imagefolder") and not path:
        raise DatasetError(f"data.path: set it to the local root of {name} (nothing downloads)")
    elif name in ("cifar10", "cifar100"):
        (train, test), classes = _cifar(tv, name, path)
    elif name == "svhn":
        (train, test), classes = _svhn(tv, path)
    elif name == "imagefolder":
        (train, test), classes = _imagefolder(tv, path)
    else:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return normalise_u8(train[0], test[0], classes, train[1], test[1])


# ------------------------------------------------------------------- images and models
def augmenter(name: str, input_shape: tuple[int, ...]) -> Callable[[torch.Tensor], torch.Tensor]:
    """A batch transform (N,C,H,W -> same): ``crop-flip`` is CIFAR's random 4-pixel-padded
    crop and horizontal flip, drawn per image (``torchvision.transforms.v2``)."""
    _tv(f"train.augment={name!r}")
    from torchvision.transforms import v2

    one = v2.Compose([v2.RandomCrop(tuple(input_shape[1:]), padding=4), v2.RandomHorizontalFlip()])
    return lambda xb: torch.stack([one(x) for x in xb])


def tile(images: torch.Tensor, per_row: int, pad: int = 2) -> np.ndarray:
    """Images (N,C,H,W in [0, 1]) tiled ``per_row`` to a row, as an H,W,C array."""
    if available():
        from torchvision.utils import make_grid

        grid = make_grid(images, nrow=per_row, padding=pad, pad_value=1.0)
    else:  # the CPU-only path: the same layout with numpy
        n, c, h, w = images.shape
        rows = -(-n // per_row)
        grid = torch.ones(c, rows * (h + pad) + pad, per_row * (w + pad) + pad)
        for i, im in enumerate(images):
            r, k = divmod(i, per_row)
            top, left = pad + r * (h + pad), pad + k * (w + pad)
            grid[:, top : top + h, left : left + w] = im
    return grid.permute(1, 2, 0).numpy()


def resnet18(in_channels: int = 3, num_classes: int = 10) -> nn.Module:
    """torchvision's ResNet-18 with the CIFAR stem (3x3 stride-1 conv, no max-pool)."""
    net = _tv("model.name='resnet18'").models.resnet18(num_classes=num_classes)
    net.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
    net.maxpool = nn.Identity()
    return net
