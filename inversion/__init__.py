"""Data-free synthesis of labelled inputs from a trained classifier (model inversion).

Plain PyTorch: nothing here knows Flower or the federated code that uses it.
"""

from inversion.allocation import allocate, labels_for, proportional_counts
from inversion.engine import InputSpec, InversionConfig, InversionResult, invert
from inversion.pool import SyntheticPool, invert_with_pool

__all__ = [
    "InputSpec",
    "InversionConfig",
    "InversionResult",
    "SyntheticPool",
    "allocate",
    "invert",
    "invert_with_pool",
    "labels_for",
    "proportional_counts",
]
