"""Small numeric helpers that several analyses share (one copy of each)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def softmax(logits: np.ndarray, temperature: float = 1.0, axis: int = -1) -> np.ndarray:
    """exp(z / T) / sum exp(z / T) along `axis`, as float32.

    The maximum is subtracted first so large logits cannot overflow exp().
    """
    if temperature <= 0:
        raise ValueError("temperature must be positive")
    z = np.asarray(logits, dtype=np.float64) / temperature
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True)).astype(np.float32)


def pair(v: int | Sequence[int]) -> tuple[int, int]:
    """A layer's (height, width) setting, whether torch stored it as an int or a tuple."""
    if isinstance(v, int):
        return v, v
    return int(v[0]), int(v[1])
