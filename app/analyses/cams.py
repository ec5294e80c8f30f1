"""Grad-CAM's relatives: Grad-CAM++, LayerCAM and Score-CAM.

All four CAM methods build a coarse map from one convolutional layer's feature maps
A (channels k, positions ij) and upsample it to the input. They differ only in how
much each feature map, or each position of it, counts:

- Grad-CAM: one weight per channel, the mean gradient of the class score over the map.
- Grad-CAM++ (Chattopadhay et al. 2018): one weight per channel, a sum of the POSITIVE
  gradients only, each scaled by a factor alpha_ij from the second and third powers of
  the gradient; several small objects of a class then all light up, not only the largest.
- LayerCAM (Jiang et al. 2021): no channel weight; every position keeps its own positive
  gradient (relu(grad) * A), so the map keeps finer detail and also works at early layers.
- Score-CAM (Wang et al. 2020): no gradients at all. Each feature map, upsampled and
  scaled to 0..1, is used as a mask on the input; the class score of each masked input,
  softmaxed over the channels, is that channel's weight. One forward pass per channel,
  so it is the slow one (batched, with progress).

The formulas follow the `grad-cam` package (jacobgil/pytorch-grad-cam 1.5.7), which the
tests use as an oracle; unlike that package, maps are returned unnormalised (comparable
between classes for the same image and layer), upsampled like `attribution.grad_cam`.
Gradients come from the same private fx graph as Grad-CAM (no hooks on the shared module).
"""

from __future__ import annotations

import time
import weakref

import numpy as np
import torch
import torch.nn.functional as F

from app.analyses import attribution as attr
from app.networks.loaded import LoadedModel
from app.serving import sharing
from app.serving.progress import Progress

# Masked copies per forward pass in Score-CAM (the grad-cam package's default is 16)
SCORE_CAM_BATCH = 16
# Grad-CAM++'s guard against 0/0 where the gradient vanishes (the grad-cam package's value)
_EPS = 1e-6


def _activation_and_gradient(
    model: LoadedModel, x: torch.Tensor, target: int, layer: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """The layer's output A and d(class logit)/dA, both [1, K, h, w] fp32 on CPU."""
    graph = attr.private_graph(model, False, None)
    with model.gradient_pass():
        leaf = attr.input_leaf(model, x, requires_grad=False)
        outs = graph(leaf)
        act = outs[layer]
        (grad,) = torch.autograd.grad(outs[attr.logits_layer(model)][:, target].float().sum(), [act])
    return act.detach().float().cpu(), grad.float().cpu()


def _upsampled(cam: torch.Tensor, x: torch.Tensor) -> np.ndarray:
    """ReLU of a coarse [1, h, w] map, upsampled bilinearly to the input's size: [H, W]."""
    cam = F.relu(cam)[None]
    return attr.to_numpy(F.interpolate(cam, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)[0, 0])


def grad_cam_plus_plus(model: LoadedModel, x: torch.Tensor, target: int, layer: str | None = None) -> np.ndarray:
    """Chattopadhay et al.'s Grad-CAM++ at `layer` (default: Grad-CAM's), [H, W] at input size.

    Channel weight w_k = sum_ij alpha_ij relu(g_ij), alpha_ij = g^2 / (2 g^2 + sum(A_k) g^3),
    the closed form for an exponential of the score (eq. 19 of the paper), then
    relu(sum_k w_k A_k). Where g = 0, alpha is 0.
    """
    target, layer = attr.check_target(model, target), attr.cam_layer(model, layer)
    act, grad = _activation_and_gradient(model, x, target, layer)
    g2 = grad**2
    alpha = g2 / (2 * g2 + act.sum(dim=(2, 3), keepdim=True) * g2 * grad + _EPS)
    alpha = torch.where(grad != 0, alpha, torch.zeros_like(alpha))
    weights = (F.relu(grad) * alpha).sum(dim=(2, 3), keepdim=True)
    return _upsampled((weights * act).sum(1), x)


def layer_cam(model: LoadedModel, x: torch.Tensor, target: int, layer: str | None = None) -> np.ndarray:
    """Jiang et al.'s LayerCAM at `layer` (default: Grad-CAM's), [H, W]: relu(sum_k relu(g_k) * A_k).

    Each position is weighted by its own positive gradient instead of a channel average.
    """
    target, layer = attr.check_target(model, target), attr.cam_layer(model, layer)
    act, grad = _activation_and_gradient(model, x, target, layer)
    return _upsampled((F.relu(grad) * act).sum(1), x)


def score_cam_masks(model: LoadedModel, x: torch.Tensor, layer: str) -> torch.Tensor:
    """Score-CAM's masks: each channel of `layer` upsampled to the input (bilinear, corners
    aligned, as the paper's code) and min-max scaled to 0..1 per channel, [K, H, W]."""
    act = attr.layer_output(model, x, layer)
    up = F.interpolate(act, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=True)[0]
    flat = up.flatten(1)
    lo, hi = flat.min(1).values[:, None, None], flat.max(1).values[:, None, None]
    return (up - lo) / (hi - lo + 1e-8)


def score_cam(
    model: LoadedModel,
    x: torch.Tensor,
    target: int,
    layer: str | None = None,
    progress: Progress | None = None,
    *,
    batch: int = SCORE_CAM_BATCH,
) -> np.ndarray:
    """Wang et al.'s Score-CAM at `layer` (default: Grad-CAM's), [H, W].

    For every channel k: mask the (normalised) input with channel k's 0..1 mask, run the
    network, read the class logit s_k. Weights = softmax(s) over the channels; map =
    relu(sum_k w_k A_k), upsampled. The masked copies run `batch` at a time;
    progress(done, channels) is called after each batch (it may raise Cancelled).
    """
    target, layer = attr.check_target(model, target), attr.cam_layer(model, layer)
    x = x.detach().float().cpu()
    masks = score_cam_masks(model, x, layer)
    graph = attr.private_graph(model, False, attr.logits_layer(model))
    name = attr.logits_layer(model)
    scores = []
    for first in range(0, len(masks), batch):
        chunk = x * masks[first : first + batch, None]
        with sharing.forward(), torch.inference_mode(), attr.no_autocast(model):
            out = graph(chunk.to(model.device, memory_format=torch.channels_last))[name]
        scores.append(out[:, target].float().cpu())
        if progress is not None:
            progress(min(first + batch, len(masks)), len(masks))
    weights = torch.softmax(torch.cat(scores), 0)
    act = attr.layer_output(model, x, layer)[0]
    return _upsampled((weights[:, None, None] * act).sum(0, keepdim=True), x)


# Seconds of one forward pass of one input per model, timed on first use.
_forward_seconds: weakref.WeakKeyDictionary[LoadedModel, float] = weakref.WeakKeyDictionary()


def forward_seconds(model: LoadedModel, batch: int = SCORE_CAM_BATCH) -> float:
    """Seconds per image of a batched fp32 forward pass, timed once per model (a page's estimate)
    after one warm-up image (the first pass also sets up the kernels, several times slower)."""
    if model not in _forward_seconds:
        graph = attr.private_graph(model, False, attr.logits_layer(model))
        x = torch.zeros(batch, model.channels, model.input_size, model.input_size)
        with sharing.forward(), torch.inference_mode(), attr.no_autocast(model):
            graph(x[:1].to(model.device, memory_format=torch.channels_last))
            start = time.perf_counter()
            graph(x.to(model.device, memory_format=torch.channels_last))
        _forward_seconds[model] = (time.perf_counter() - start) / batch
    return _forward_seconds[model]


def estimate_score_cam_seconds(model: LoadedModel, layer: str | None = None) -> float:
    """Expected time of `score_cam`: one forward pass per channel of the layer."""
    channels = model.layer(attr.cam_layer(model, layer)).out_shape[0]
    return channels * forward_seconds(model)
