"""Type aliases shared by the core, the algorithms and the adapters."""

from __future__ import annotations

import torch

StateDict = dict[str, torch.Tensor]  # a model's (or a control variate's) named tensors
