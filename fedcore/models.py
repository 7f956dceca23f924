"""Models by name: the built-in ones (with BatchNorm, whose statistics inversion matches), or
your own as ``"package.module:factory"``, a callable that returns an ``nn.Module`` for
``(in_channels, num_classes)``."""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch
from torch import nn

from fedcore.vision import resnet18


class CNN(nn.Module):
    """2 conv + 2 fc with BatchNorm for 1x28x28 inputs (~0.41 M parameters)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, hidden: int = 256) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 16, 5, padding=2, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5, padding=2, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(32 * 7 * 7, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class _Block(nn.Module):
    """Basic residual block (two 3x3 convs with BatchNorm)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNetSmall(nn.Module):
    """ResNet-style net (stem + 3 stages of one block) with BatchNorm for 3x32x32 inputs."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 1, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        self.stages = nn.Sequential(
            _Block(width, width, 1), _Block(width, 2 * width, 2), _Block(2 * width, 4 * width, 2)
        )
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


MODELS: dict[str, Callable[..., nn.Module]] = {
    "cnn": CNN,
    "resnet": ResNetSmall,
    "resnet18": resnet18,  # torchvision's, CIFAR stem (~11.2 M parameters)
}


def model_factory(name: str) -> Callable[[int, int], nn.Module]:
    """The factory ``(in_channels, num_classes) -> nn.Module`` that ``name`` names."""
    if name in MODELS:
        builtin = MODELS[name]
        return lambda c, k: builtin(in_channels=c, num_classes=k)
    module, sep, attr = name.partition(":")
    if not sep or not module or not attr:
        raise ValueError(
            f"model.name: {name!r} is neither a built-in model {tuple(MODELS)} nor "
            "'package.module:factory' (a callable returning an nn.Module for "
            "(in_channels, num_classes))"
        )
    try:
        factory = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(
            f"model.name: cannot import {attr!r} from {module!r} ({e}); the module must be "
            "importable from the app's directory (e.g. examples/own_model.py -> "
            "'examples.own_model:factory')"
        ) from e
    if not callable(factory):
        raise ValueError(f"model.name: {name!r} is not callable")
    return factory


def build_model(name: str, in_channels: int, num_classes: int) -> nn.Module:
    """Instantiate a model by name (built-in, or ``package.module:factory``)."""
    model = model_factory(name)(in_channels, num_classes)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model.name: {name!r} returned {type(model).__name__}, not an nn.Module")
    return model


def model_problems(name: str) -> list[str]:
    """Why ``name`` names no model factory (empty when it does)."""
    try:
        model_factory(name)
    except ValueError as e:
        return [str(e)]
    return []


def has_batchnorm(model: nn.Module) -> bool:
    """Whether ``model`` has a BatchNorm layer that tracks running statistics."""
    return any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None
        for m in model.modules()
    )


def num_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def get_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
