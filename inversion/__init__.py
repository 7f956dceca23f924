"""Data-free synthesis of labelled inputs from a trained classifier (model inversion).

Plain PyTorch: nothing here knows Flower or the federated code that uses it.
"""

from inversion.allocation import allocate, labels_for, proportional_counts
from inversion.bank import SyntheticBank, invert_with_bank, nearest_rms
from inversion.engine import InputSpec, InversionConfig, InversionResult, invert

__all__ = [
    "InputSpec",
    "InversionConfig",
    "InversionResult",
    "SyntheticBank",
    "allocate",
    "invert",
    "invert_with_bank",
    "labels_for",
    "nearest_rms",
    "proportional_counts",
]
