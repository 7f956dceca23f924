"""An example of bringing your own model: ``model.name = "examples.own_model:small_cnn"``.

A factory takes ``(in_channels, num_classes)`` and returns an ``nn.Module`` for the dataset's
images; any importable module works (it must travel with the app: put it in the project).
ZDAC and ZDAS invert by matching BatchNorm running statistics, so give the model BatchNorm
layers (``small_cnn``); a model without them (``mlp``) runs every FedAvg-family algorithm
as usual, and ZDAC/ZDAS only with ``zdac.inversion.bn=0`` / ``zdas.inversion.bn=0``.
"""

from __future__ import annotations

from torch import nn


def small_cnn(in_channels: int, num_classes: int) -> nn.Module:
    """Two conv blocks with BatchNorm and a global-average-pooled linear head."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, num_classes),
    )


def mlp(in_channels: int, num_classes: int) -> nn.Module:
    """A BatchNorm-free MLP for 28x28 images."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_channels * 28 * 28, 128),
        nn.ReLU(),
        nn.Linear(128, num_classes),
    )
