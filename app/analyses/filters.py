"""Convolution filter weights, arranged to be looked at.

First-layer filters act directly on pixels, so shown as small RGB (or grey)
images they reveal what the network looks for: edges, colour blobs. Deeper
filters have hundreds of input channels and only make sense one input channel
at a time.
"""

from __future__ import annotations

import numpy as np
import torch

from app.networks.loaded import LoadedModel


def conv_weight(model: LoadedModel, layer: str) -> torch.Tensor:
    """The weight [out, in, k, k] of the conv layer with this table name."""
    row = model.layer(layer)
    if row.kind != "conv":
        raise ValueError(f"{layer} is a {row.kind} layer, not a convolution")
    return model.module.get_submodule(row.path).weight.detach().float().cpu()


def first_layer_filters(model: LoadedModel) -> np.ndarray:
    """[out, k, k, in] in 0..1, each filter stretched on its own symmetric range.

    Symmetric scaling (0.5 = weight 0) keeps the sign visible: a red-minus-green
    filter shows as red against green, not as an arbitrary shift of colours.
    """
    first = next(r.name for r in model.layers if r.kind == "conv")
    w = conv_weight(model, first)
    scale = w.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
    return (0.5 + 0.5 * w / scale).permute(0, 2, 3, 1).numpy()


def filter_channels(model: LoadedModel, layer: str, index: int) -> np.ndarray:
    """One filter's kernels [in, k, k] (raw weights) for a per-input-channel view."""
    w = conv_weight(model, layer)
    if not 0 <= index < w.shape[0]:
        raise IndexError(f"{layer} has {w.shape[0]} filters; {index} is out of range")
    return w[index].numpy()
