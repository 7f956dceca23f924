"""Data-free synthesis of labelled inputs from a trained classifier (model inversion)."""

from inversion.allocation import allocate
from inversion.engine import InversionConfig, InversionResult, invert
from inversion.pool import SyntheticPool

__all__ = ["InversionConfig", "InversionResult", "SyntheticPool", "allocate", "invert"]
