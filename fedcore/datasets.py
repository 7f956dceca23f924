"""Datasets by name: :func:`load_dataset` picks the reader (once per process)."""

from __future__ import annotations

from functools import lru_cache

from fedcore import vision
from fedcore.data import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    DatasetError,
    Splits,
    load_idx_dir,
    load_npz,
)

DATASETS = (*vision.DATASETS, "idx", "npz")
# Read by the project's own readers, with no torchvision and no data.path needed.
BUILTIN = ("fashion-mnist", "idx", "npz")


@lru_cache(maxsize=4)
def load_dataset(name: str, path: str = "", test_path: str = "") -> Splits:
    """Load a dataset by name once per process (cached).

    torchvision's sets (:data:`fedcore.vision.DATASETS`) read ``path``, a local root in
    torchvision's layout (``fashion-mnist``: also an IDX directory, by default the Debian
    package's); ``idx`` reads any MNIST-format directory; ``npz`` a train file ``path`` and a
    test file ``test_path``. Without torchvision, ``fashion-mnist`` is read as IDX.
    """
    if name == "idx":
        return load_idx_dir(path)
    if name == "npz":
        return load_npz(path, test_path)
    if name == "fashion-mnist" and not vision.available():
        return load_idx_dir(path or FASHION_MNIST_DIR, FASHION_MNIST_CLASSES)
    if name in vision.DATASETS:
        return vision.load(name, path)
    raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
