"""Datasets as tensors, and the readers that need no torchvision: IDX directories and ``.npz``.

Every reader (these and :mod:`fedcore.vision`'s) loads the whole split once and returns an
:class:`ArrayDataset` that keeps the images compact, as the uint8 pixels they were read as,
and normalises (per-channel mean/std of the training split) only the rows asked for: a
client's partition, a batch of the test set. Each process of a simulation holds a split in a
quarter of the memory a float32 copy takes (Fashion-MNIST's training split: 47 MB, not
188 MB), and the normalised values are exactly those of normalising the whole split at once:
the formula (:func:`standardise`) works element by element. No per-sample Python transforms.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


class DatasetError(ValueError):
    """A dataset file is missing or malformed; the message names the path and the fix."""


@dataclass(frozen=True)
class DataSpec:
    """What models, inversion and image grids need to know of the inputs, as one value:
    the input shape, the per-channel normalisation (mean, std) and the class names."""

    input_shape: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return int(self.input_shape[0])


def standardise(pixels: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 pixels (..., C, H, W) -> float32 ``(p / 255 - mean) / std`` per channel.

    The one formula every split is normalised with, in this order of operations; it works
    element by element, so any rows of a split normalise to exactly the values the whole
    split would. ``mean``/``std``: float32 tensors of C values."""
    view = (-1, 1, 1)
    return pixels.float().div_(255.0).sub_(mean.view(view)).div_(std.view(view))


Index = int | slice | np.ndarray | torch.Tensor | range


class ArrayDataset(Dataset):
    """Images and labels held as two tensors; indexing returns ``(x[i], y[i])``.

    ``mean``/``std`` are the per-channel statistics used to normalise ``x``: the inversion
    engine uses them to keep synthetic images inside the valid pixel range.

    The readers build compact datasets (:meth:`from_pixels`): they hold the uint8
    :attr:`pixels` and normalise on access, so ``ds[idx]`` and :meth:`rows` normalise only
    those rows and :meth:`subset` copies only those pixels; :attr:`x` normalises every row,
    afresh on each access (a new tensor: modifying it changes nothing in the dataset), for
    the callers that really need the whole set. Built from a float tensor instead
    (``ArrayDataset(x, y, ...)``), the images are held as given.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        classes: tuple[str, ...],
    ) -> None:
        if x.shape[0] != y.shape[0]:
            raise DatasetError(f"{x.shape[0]} images but {y.shape[0]} labels")
        self._x: torch.Tensor | None = x  # normalised images, or None: compact
        self._pixels: torch.Tensor | None = None  # uint8 images of a compact dataset
        self._norm: tuple[torch.Tensor, torch.Tensor] | None = None  # float32 mean, std
        self.y = y.long()
        self.mean, self.std, self.classes = tuple(mean), tuple(std), tuple(classes)

    @classmethod
    def from_pixels(
        cls,
        pixels: torch.Tensor,
        y: torch.Tensor,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        classes: tuple[str, ...],
    ) -> ArrayDataset:
        """A compact dataset: uint8 ``pixels`` (N,C,H,W), normalised with ``mean``/``std``
        (:func:`standardise`) when rows are read."""
        if pixels.dtype != torch.uint8:
            raise DatasetError(f"pixels must be uint8, not {pixels.dtype}")
        ds = cls(pixels, y, mean, std, classes)
        ds._x, ds._pixels = None, pixels
        # exactly the float32 statistics: a float32 value survives float64 and back
        ds._norm = (
            torch.tensor(ds.mean, dtype=torch.float32),
            torch.tensor(ds.std, dtype=torch.float32),
        )
        return ds

    @property
    def pixels(self) -> torch.Tensor | None:
        """The uint8 images of a compact dataset (None: built from normalised floats)."""
        return self._pixels

    def rows(self, index: Index) -> torch.Tensor:
        """The normalised images at ``index`` (an int, a slice or indices), only those."""
        if isinstance(index, np.ndarray | range):
            index = torch.as_tensor(np.asarray(index), dtype=torch.long)
        if self._pixels is None or self._norm is None:
            assert self._x is not None
            return self._x[index]
        return standardise(self._pixels[index], *self._norm)

    @property
    def x(self) -> torch.Tensor:
        """All images, normalised (for a compact dataset: computed on each access)."""
        if self._x is not None:
            return self._x
        return self.rows(slice(None))

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __getitem__(self, i: Index) -> tuple[torch.Tensor, torch.Tensor]:
        return self.rows(i), self.y[i]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        images = self._pixels if self._pixels is not None else self._x
        assert images is not None
        return tuple(images.shape[1:])  # type: ignore[return-value]

    @property
    def spec(self) -> DataSpec:
        """This dataset's :class:`DataSpec`."""
        return DataSpec(self.input_shape, self.mean, self.std, self.classes)

    def subset(self, indices: np.ndarray | torch.Tensor | range) -> ArrayDataset:
        """A new dataset holding the rows at ``indices`` (copied, same normalisation; a
        compact dataset's subset is compact)."""
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        if self._pixels is not None:
            return ArrayDataset.from_pixels(
                self._pixels[idx], self.y[idx], self.mean, self.std, self.classes
            )
        assert self._x is not None
        return ArrayDataset(self._x[idx], self.y[idx], self.mean, self.std, self.classes)


@dataclass(frozen=True)
class Splits:
    """A dataset's train and test split."""

    train: ArrayDataset
    test: ArrayDataset


def _owned(images: np.ndarray) -> torch.Tensor:
    """``images`` as a uint8 tensor sharing its memory when it is contiguous and writable
    (else a copy)."""
    a = np.ascontiguousarray(images)
    return torch.from_numpy(a if a.flags.writeable else a.copy())


def normalise_u8(
    train_u8: np.ndarray, test_u8: np.ndarray, classes: tuple[str, ...], ytr, yte
) -> Splits:
    """uint8 NCHW arrays -> compact datasets standardised with the train split's statistics.

    The statistics come from the whole train split scaled to [0, 1] as float32 (a
    transient copy, freed before returning); the images stay uint8. An array that is
    contiguous and writable is taken over, not copied: the readers hand over arrays nothing
    else holds."""
    ptr, pte = _owned(train_u8), _owned(test_u8)
    scaled = ptr.float().div_(255.0)  # the first two steps of standardise()
    mean = scaled.mean(dim=(0, 2, 3))
    std = scaled.std(dim=(0, 2, 3)).clamp_min(1e-6)
    del scaled
    m, s = tuple(mean.tolist()), tuple(std.tolist())
    return Splits(
        ArrayDataset.from_pixels(
            ptr, torch.from_numpy(np.asarray(ytr, dtype=np.int64)), m, s, classes
        ),
        ArrayDataset.from_pixels(
            pte, torch.from_numpy(np.asarray(yte, dtype=np.int64)), m, s, classes
        ),
    )


# ----------------------------------------------------------------------------- IDX
def _find(directory: Path, stem: str, hint: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    raise DatasetError(f"missing file {directory / stem}[.gz]. {hint}")


def _read_idx(path: Path, hint: str) -> np.ndarray:
    """Parse one IDX file (optionally gzipped) into a numpy array."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DatasetError(f"cannot read {path}: {e}. {hint}") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetError(f"{path} is not an unsigned-byte IDX file (bad magic). {hint}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) < header or len(raw) != header + int(np.prod(dims)):
        raise DatasetError(f"{path} is truncated: header says {dims}. {hint}")
    # a copy the array owns: ``raw`` is freed on return and the dataset takes the array over
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def load_idx_dir(directory: str | Path, classes: tuple[str, ...] | None = None) -> Splits:
    """Read an MNIST-format directory (``train-images-idx3-ubyte[.gz]`` and friends)."""
    d = Path(directory)
    hint = (
        "For Fashion-MNIST install the Debian package: "
        "`apt-get install -y dataset-fashion-mnist` (files land in "
        f"{FASHION_MNIST_DIR}); for another dataset set data.path to its IDX directory."
    )
    if not d.is_dir():
        raise DatasetError(f"dataset directory {d} does not exist. {hint}")
    arrays = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        xi = _read_idx(_find(d, f"{prefix}-images-idx3-ubyte", hint), hint)
        yi = _read_idx(_find(d, f"{prefix}-labels-idx1-ubyte", hint), hint)
        if xi.ndim != 3 or yi.ndim != 1 or xi.shape[0] != yi.shape[0]:
            raise DatasetError(f"{d}: {split} images {xi.shape} do not match labels {yi.shape}")
        arrays[split] = (xi[:, None, :, :], yi)
    n_cls = int(max(arrays["train"][1].max(), arrays["test"][1].max())) + 1
    names = classes if classes and len(classes) == n_cls else tuple(map(str, range(n_cls)))
    return normalise_u8(
        arrays["train"][0], arrays["test"][0], names, arrays["train"][1], arrays["test"][1]
    )


# ----------------------------------------------------------------------------- NPZ
def _npz_problem(x: np.ndarray, y: np.ndarray) -> str:
    """What is wrong with an npz's arrays (empty string: nothing)."""
    if x.dtype.kind not in "iuf":
        return f"x has dtype {x.dtype}, not numbers"
    if y.dtype.kind not in "iu":
        return f"y has dtype {y.dtype}; labels must be integers"
    if y.min() < 0:
        return f"y holds negative labels (min {int(y.min())})"
    if x.dtype.kind == "f":
        if not np.isfinite(x).all():
            return f"x holds {int((~np.isfinite(x)).sum())} NaN or infinite values"
        if x.min() < 0 or x.max() > 1:
            return f"float x must lie in [0, 1], found [{x.min():.3g}, {x.max():.3g}]"
    elif x.min() < 0 or x.max() > 255:
        return f"integer x must lie in 0..255, found {int(x.min())}..{int(x.max())}"
    return ""


def u8_images(x: np.ndarray, y: np.ndarray, where: str, hint: str = "") -> tuple:
    """An npz's ``x`` (N,H,W or N,C,H,W; uint8 or floats in [0, 1]) and ``y`` (N integer
    labels, N >= 1) as uint8 NCHW images and int64 labels; a :class:`DatasetError` naming
    ``where`` (and ``hint``) otherwise."""
    tail = f". {hint}" if hint else ""
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or y.ndim != 1 or len(x) != len(y) or len(y) == 0:
        raise DatasetError(f"{where}: x {x.shape} / y {y.shape} are not N images + N labels{tail}")
    problem = _npz_problem(x, y)
    if problem:
        raise DatasetError(f"{where}: {problem}{tail}")
    if x.dtype != np.uint8:
        x = np.rint(x.astype(np.float64) * (1.0 if x.dtype.kind in "iu" else 255.0))
    return x.astype(np.uint8), y.astype(np.int64)


def load_npz(train_path: str | Path, test_path: str | Path) -> Splits:
    """Read two ``.npz`` files holding ``x`` (N,H,W or N,C,H,W; uint8 or [0,1] floats) and ``y``."""

    def read(path: Path) -> tuple[np.ndarray, np.ndarray]:
        hint = (
            "Each .npz must hold 'x' (N,H,W or N,C,H,W: uint8 0..255 or floats in [0, 1]) "
            "and 'y' (N integer labels >= 0), N >= 1."
        )
        if not path.is_file():
            raise DatasetError(f"missing file {path}. {hint}")
        try:
            with np.load(path) as z:
                x, y = z["x"], z["y"]
        except (KeyError, ValueError, OSError, EOFError, zlib.error) as e:
            raise DatasetError(f"cannot read {path}: {e}. {hint}") from e
        except AttributeError as e:  # a plain .npy: np.load returns an array, not an archive
            raise DatasetError(f"{path} is not an .npz archive. {hint}") from e
        return u8_images(x, y, str(path), hint)

    xtr, ytr = read(Path(train_path))
    xte, yte = read(Path(test_path))
    if xtr.shape[1:] != xte.shape[1:]:
        raise DatasetError(
            f"{test_path}: test images are {xte.shape[1:]} but train images {xtr.shape[1:]} "
            f"({train_path}); both splits need the same C,H,W"
        )
    if yte.max() > ytr.max():
        raise DatasetError(
            f"{test_path}: test label {int(yte.max())} is not a class of the train split "
            f"(labels 0..{int(ytr.max())} in {train_path})"
        )
    n_cls = int(ytr.max()) + 1
    return normalise_u8(xtr, xte, tuple(map(str, range(n_cls))), ytr, yte)
