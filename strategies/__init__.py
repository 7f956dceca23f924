"""Flower strategies: one thin adapter over the algorithms of :mod:`fedcore.algorithms`."""

from strategies.algorithm import AlgorithmStrategy, EvalResult, FederationError, TrainResult

__all__ = ["AlgorithmStrategy", "EvalResult", "FederationError", "TrainResult"]
