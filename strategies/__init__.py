"""Flower strategies: one thin adapter over the algorithms of :mod:`fedcore.algorithms`."""

from strategies.algorithm import AlgorithmStrategy, EvalResult, TrainResult

__all__ = ["AlgorithmStrategy", "EvalResult", "TrainResult"]
