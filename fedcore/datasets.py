"""Datasets by name: :func:`load_dataset` picks the reader (once per process)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from fedcore import vision
from fedcore.data import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    DatasetError,
    Splits,
    load_idx_dir,
    load_npz,
)

DATASETS = (*vision.DATASETS, "idx", "npz", "sites")
# Read by the project's own readers, with no torchvision and no data.path needed ("sites":
# each SuperNode reads its own files, fedcore.sites; the server at most data.test_path).
BUILTIN = ("fashion-mnist", "idx", "npz", "sites")


IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _idx_source(given: Path, folder: str) -> Path | None:
    """The directory torchvision would read an MNIST-format set from (``given/folder/raw``
    when that exists, else ``given``) if it holds all four IDX files, plain or ``.gz``."""
    source = given / folder / "raw" if (given / folder / "raw").is_dir() else given
    found = all((source / n).is_file() or (source / f"{n}.gz").is_file() for n in IDX_FILES)
    return source if found else None


@lru_cache(maxsize=4)
def load_dataset(name: str, path: str = "", test_path: str = "") -> Splits:
    """Load a dataset by name once per process (cached).

    torchvision's sets (:data:`fedcore.vision.DATASETS`) read ``path``, a local root in
    torchvision's layout (``fashion-mnist``: also an IDX directory, by default the Debian
    package's); ``idx`` reads any MNIST-format directory; ``npz`` a train file ``path`` and a
    test file ``test_path``. ``fashion-mnist`` is read by :func:`load_idx_dir` from the
    IDX files torchvision would read (the same bytes, the same images and labels), so the
    default never imports torchvision (about 100 MB per process); torchvision reads it only
    when those files are not there (to report what is missing), if it is installed.
    """
    if name == "sites":
        raise DatasetError(
            "dataset 'sites' is held by the SuperNodes (--node-config data-path=...); "
            "no process loads it whole"
        )
    if name == "idx":
        return load_idx_dir(path)
    if name == "npz":
        return load_npz(path, test_path)
    if name == "fashion-mnist":
        source = _idx_source(Path(path or FASHION_MNIST_DIR), "FashionMNIST")
        if source is not None or not vision.available():
            return load_idx_dir(source or path or FASHION_MNIST_DIR, FASHION_MNIST_CLASSES)
    if name in vision.DATASETS:
        return vision.load(name, path)
    raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
