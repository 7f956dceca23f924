"""A site's own data: what a SuperNode started with ``--node-config data-path=<path>`` trains
and evaluates on, read from its files only.

A site is an ``.npz`` file (``x``: N,H,W or N,C,H,W, uint8 or floats in [0, 1]; ``y``: N
integer labels; optionally ``x_test``/``y_test``) or an image directory in torchvision's
ImageFolder layout whose class folders are named by label index (``0/``, ``1/``, ...; the
same index at every site), optionally split into ``train/`` and ``test/``. Without its own
test split a site holds out a seeded share of its samples (node keys ``test-share``,
``test-seed``). Pixels stay uint8 until the server's normalisation arrives
(:func:`client_data`); what a site tells the server before round 1 is
:func:`site_summary` (sizes, shape, largest label, and only when asked: pixel sums and
label counts). Every problem is a :class:`~fedcore.data.DatasetError` naming the file and
the fix.
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedcore.data import ArrayDataset, DatasetError, DataSpec, u8_images

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm")
LAYOUT = (
    "a site is an .npz file (x, y, optional x_test, y_test) or an image directory "
    "DIR/<label>/<image> (or DIR/train/<label>/..., DIR/test/<label>/...) with class folders "
    "named by label index"
)


@dataclass(frozen=True)
class SitePixels:
    """One site's samples as read: uint8 images (N,C,H,W) and int64 labels, train and test."""

    name: str
    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.x.shape[1:])  # type: ignore[return-value]


@dataclass(frozen=True)
class ClientData:
    """What one client trains and evaluates on: its train and test set and label counts."""

    train: ArrayDataset
    test: ArrayDataset
    counts: np.ndarray  # (num_classes,)

    @property
    def spec(self) -> DataSpec:
        return self.train.spec


# ---------------------------------------------------------------------------- reading
def _as_u8(x: np.ndarray, y: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Checked uint8 NCHW images and int64 labels (the npz dataset's rules), an empty site
    named as such."""
    if x.ndim in (3, 4) and y.ndim == 1 and len(x) == len(y) == 0:
        raise DatasetError(f"{where}: holds no samples; a site needs at least one")
    return u8_images(x, y, where)


def read_npz_splits(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """An .npz site file as {"train": (x, y)} and, when it holds them, "test"."""
    if not zipfile.is_zipfile(path):
        raise DatasetError(f"{path} is not an .npz archive (not a zip file); {LAYOUT}")
    try:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError, zlib.error) as e:
        raise DatasetError(f"cannot read {path}: {e}; {LAYOUT}") from e
    except AttributeError as e:  # a plain .npy
        raise DatasetError(f"{path} is not an .npz archive; {LAYOUT}") from e
    if "x" not in arrays or "y" not in arrays:
        raise DatasetError(f"{path} holds {sorted(arrays)}, not x and y; {LAYOUT}")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DatasetError(f"{path}: give both x_test and y_test, or neither")
    out = {"train": _as_u8(arrays["x"], arrays["y"], f"{path} (x, y)")}
    if "x_test" in arrays:
        out["test"] = _as_u8(arrays["x_test"], arrays["y_test"], f"{path} (x_test, y_test)")
    return out


def _read_folder(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images under ``root/<label>/`` as uint8 NCHW (grayscale stays one channel)."""
    from PIL import Image, UnidentifiedImageError

    classes = sorted(p for p in root.iterdir() if p.is_dir())
    if not classes:
        raise DatasetError(f"{root} has no class folders; {LAYOUT}")
    bad = [p.name for p in classes if not p.name.isdigit()]
    if bad:
        raise DatasetError(
            f"{root}: class folders {bad[:3]} are not label indices; name each class folder "
            "by its label (0, 1, ...), the same at every site"
        )
    xs: list[np.ndarray] = []
    ys: list[int] = []
    for folder in classes:
        for f in sorted(folder.iterdir()):
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(f) as im:
                    a = np.asarray(im.convert("L" if im.mode in ("L", "1", "I;16") else "RGB"))
            except (OSError, UnidentifiedImageError) as e:
                raise DatasetError(f"cannot read image {f}: {e}") from e
            a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
            if xs and a.shape != xs[0].shape:
                raise DatasetError(
                    f"{f} is {a.shape} (C,H,W) but {root}'s first image is {xs[0].shape}: "
                    "resize every image to one size"
                )
            xs.append(a)
            ys.append(int(folder.name))
    if not xs:
        raise DatasetError(f"{root} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


def _held_out(x: np.ndarray, y: np.ndarray, share: float, seed: int) -> dict:
    """A seeded share of the samples as the test split (at least one each when N >= 2)."""
    if not 0 < share < 1:
        raise DatasetError(f"test-share must be in (0, 1), got {share}")
    n = len(y)
    if n < 2:
        raise DatasetError("a site without x_test/y_test needs at least 2 samples")
    k = min(max(1, round(share * n)), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    test, train = np.sort(order[:k]), np.sort(order[k:])
    return {"train": (x[train], y[train]), "test": (x[test], y[test])}


@lru_cache(maxsize=2)
def read_site(path: str, name: str = "", test_share: float = 0.2, seed: int = 0) -> SitePixels:
    """A site's files as :class:`SitePixels` (read once per process); ``name`` defaults to
    the file or folder name without suffix."""
    p = Path(path)
    if not path or not p.exists():
        raise DatasetError(f"data-path {path!r} does not exist; {LAYOUT}")
    if p.is_dir():
        if (p / "train").is_dir():
            splits = {"train": _read_folder(p / "train")}
            if (p / "test").is_dir():
                splits["test"] = _read_folder(p / "test")
        else:
            splits = {"train": _read_folder(p)}
    else:
        splits = read_npz_splits(p)
    if "test" not in splits:
        splits = _held_out(*splits["train"], test_share, seed)
    (x, y), (xt, yt) = splits["train"], splits["test"]
    if x.shape[1:] != xt.shape[1:]:
        raise DatasetError(f"{path}: test images {xt.shape[1:]} differ from train {x.shape[1:]}")
    return SitePixels(name or p.stem, x, y, xt, yt)


# ------------------------------------------------------------------------- reporting
def site_summary(site: SitePixels, stats: bool, counts: bool) -> dict[str, Any]:
    """What a site tells the server before round 1: its sizes, input shape and largest
    label; with ``stats`` its per-channel pixel sums (pixels / 255, float64) and squared
    sums; with ``counts`` its label counts."""
    out: dict[str, Any] = {
        "num-examples": len(site.y),
        "num-test": len(site.y_test),
        "input-shape": list(site.input_shape),
        "max-label": int(max(site.y.max(), site.y_test.max())),
    }
    if stats:
        scaled = site.x.astype(np.float64) / 255.0
        out["pixel-count"] = int(scaled.shape[0] * scaled.shape[2] * scaled.shape[3])
        out["channel-sum"] = scaled.sum(axis=(0, 2, 3)).tolist()
        out["channel-sumsq"] = np.square(scaled).sum(axis=(0, 2, 3)).tolist()
    if counts:
        out["label-counts"] = np.bincount(site.y, minlength=out["max-label"] + 1).tolist()
    return out


def misfit(site: SitePixels, input_shape: tuple[int, ...], num_classes: int) -> str:
    """Why the site does not fit what the run config fixes ("" when it does; an empty
    ``input_shape`` or a zero ``num_classes`` fixes nothing)."""
    if input_shape and site.input_shape != input_shape:
        return f"its images are {site.input_shape} (C,H,W), the federation's {input_shape}"
    top = int(max(site.y.max(), site.y_test.max()))
    if num_classes and top >= num_classes:
        return f"label {top} is outside the federation's 0..{num_classes - 1}"
    return ""


def client_data(
    site: SitePixels, mean: tuple[float, ...], std: tuple[float, ...], num_classes: int
) -> ClientData:
    """The site's train and test set normalised with the federation's ``mean``/``std``;
    refuses labels outside ``0..num_classes-1`` and a channel count other than ``mean``'s."""
    if site.x.shape[1] != len(mean):
        raise DatasetError(
            f"site {site.name}: images have {site.x.shape[1]} channels, the federation {len(mean)}"
        )
    top = int(max(site.y.max(), site.y_test.max()))
    if top >= num_classes:
        raise DatasetError(
            f"site {site.name}: label {top} is outside the federation's 0..{num_classes - 1}"
        )
    classes = tuple(str(c) for c in range(num_classes))

    def dataset(x: np.ndarray, y: np.ndarray) -> ArrayDataset:
        return ArrayDataset.from_pixels(torch.from_numpy(x), torch.from_numpy(y), mean, std,
                                        classes)  # fmt: skip

    counts = np.bincount(site.y, minlength=num_classes)
    return ClientData(dataset(site.x, site.y), dataset(site.x_test, site.y_test), counts)
