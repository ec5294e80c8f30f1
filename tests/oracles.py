"""Shared helpers for tests that use a library (captum, grad-cam) as an oracle on real networks."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from app.networks.loaded import LoadedModel
from tests.conftest import photo


def private_copy(model: LoadedModel) -> nn.Module:
    """A deep copy of the network: oracles register hooks, which must never touch the shared module."""
    return copy.deepcopy(model.module).eval()


def real_input(model: LoadedModel, size: int) -> torch.Tensor:
    """A model input: a Fashion-MNIST-sized grey picture or a `size` px photo (small: the oracles
    hold at any size that the network accepts, at a fraction of the cost)."""
    if model.channels == 1:
        return model.to_tensor(photo((model.input_size, model.input_size), seed=2).convert("L"))
    return model.to_tensor(photo((size, size), seed=1))


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    assert a.std() > 0 and b.std() > 0, "a constant map: correlation would prove nothing"
    return float(np.corrcoef(a, b)[0, 1])


def predicted(model: LoadedModel, x: torch.Tensor) -> int:
    return int(model.logits(x, "exact")[0].argmax())
