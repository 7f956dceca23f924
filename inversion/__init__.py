"""Data-free synthesis of labelled inputs from a trained classifier (model inversion).

Plain PyTorch: nothing here knows Flower or the federated code that uses it.
"""

from inversion.allocation import allocate, labels_for, proportional_counts
from inversion.bank import (
    BANK_MODES,
    Banks,
    BankSlot,
    OwnBanks,
    SharedBank,
    SyntheticBank,
    banks_from_state,
    invert_with_bank,
    nearest_rms,
    shares_bank,
)
from inversion.engine import InputSpec, InversionConfig, InversionResult, invert

__all__ = [
    "BANK_MODES",
    "BankSlot",
    "Banks",
    "InputSpec",
    "InversionConfig",
    "InversionResult",
    "OwnBanks",
    "SharedBank",
    "SyntheticBank",
    "allocate",
    "banks_from_state",
    "invert",
    "invert_with_bank",
    "labels_for",
    "nearest_rms",
    "proportional_counts",
    "shares_bank",
]
