"""Integrated Gradients (Sundararajan, Taly & Yan 2017), batched over the path.

A gradient says what a tiny change of a pixel would do; Integrated Gradients adds up
the gradients along a straight path from a baseline image (no information: black, a
blurred copy, or noise) to the real image, times the pixel's change along the path:

    IG_i = (x_i - b_i) * integral_0^1 d f(b + a (x - b)) / d x_i  da

The attributions then add up to the score difference f(x) - f(b) ("completeness"); how
far the numerical integral misses that sum is the convergence delta, shown on the page:
a large delta means more steps are needed. The integral uses Gauss-Legendre nodes and
weights on [0, 1], as captum's default, so the result equals captum's
`IntegratedGradients(...).attribute(..., method="gausslegendre")` (the tests' oracle).
Path points run `batch` at a time through the same private fx graph as the other
gradient maps (app.analyses.attribution: no hooks, fp32, under the model's lock).
"""

from __future__ import annotations

import math
import time
import weakref
from dataclasses import dataclass

import numpy as np
import torch

from app.analyses import attribution as attr
from app.analyses import occlusion
from app.networks.loaded import LoadedModel
from app.serving.progress import Progress

BASELINES = ("black", "blurred", "noise")
IG_BATCH = 8


@dataclass(frozen=True)
class IGResult:
    attributions: np.ndarray  # [C, H, W], signed, in units of the class logit
    delta: float  # sum(attributions) - (f(x) - f(baseline)): the integral's error
    score: float  # f(x): the class logit of the image
    baseline_score: float  # f(baseline)
    baseline: np.ndarray  # [C, H, W] in the model's normalised units

    @property
    def relative_delta(self) -> float:
        """|delta| as a share of |f(x) - f(baseline)|: under a few % means enough steps."""
        gap = abs(self.score - self.baseline_score)
        return abs(self.delta) / gap if gap > 0 else math.inf


def make_baseline(model: LoadedModel, x: torch.Tensor, kind: str, seed: int = 0) -> torch.Tensor:
    """The path's start, [1, C, H, W] in the model's normalised units.

    black: all pixels 0 (in 0..1 pixel units, then normalised like any image).
    blurred: a Gaussian blur of x with sigma = side / 16 (the occlusion page's blur), which keeps colour and layout but
    removes the edges the network may use. noise: uniform random pixels in 0..1 (seeded).
    """
    x = x.detach().float().cpu()
    mean = torch.tensor(model.mean).view(1, -1, 1, 1)
    std = torch.tensor(model.std).view(1, -1, 1, 1)
    if kind == "black":
        return ((0.0 - mean) / std).expand_as(x).clone()
    if kind == "blurred":
        return occlusion.make_baseline(model, x, "blur")
    if kind == "noise":
        pixels = torch.rand(x.shape, generator=torch.Generator().manual_seed(seed))
        return (pixels - mean) / std
    raise ValueError(f"unknown baseline {kind!r}; choose from {BASELINES}")


def gauss_legendre(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes (alphas) and weights of Gauss-Legendre quadrature on [0, 1]; the weights sum to 1."""
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    return (nodes + 1) / 2, weights / 2


def integrated_gradients(
    model: LoadedModel,
    x: torch.Tensor,
    target: int,
    baseline: str = "black",
    steps: int = 32,
    progress: Progress | None = None,
    *,
    batch: int = IG_BATCH,
    seed: int = 0,
) -> IGResult:
    """Integrated Gradients of the class logit from `baseline` (one of BASELINES) to x.

    `steps` path points, `batch` per forward/backward pass; progress(done, steps) after each
    batch (it may raise Cancelled).
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    target = attr.check_target(model, target)
    x = x.detach().float().cpu()
    base = make_baseline(model, x, baseline, seed)
    alphas, weights = gauss_legendre(steps)
    objective = attr.class_score(model, target)
    total = torch.zeros(x.shape[1:], dtype=torch.float64)
    for first in range(0, steps, batch):
        a = torch.tensor(alphas[first : first + batch], dtype=torch.float32).view(-1, 1, 1, 1)
        w = torch.tensor(weights[first : first + batch], dtype=torch.float64).view(-1, 1, 1, 1)
        grads = attr.input_gradient(model, base + a * (x - base), False, objective, None)
        total += (grads.double() * w).sum(0)
        if progress is not None:
            progress(min(first + batch, steps), steps)
    attributions = ((x - base)[0].double() * total).float()
    logits = model.logits(torch.cat([x, base]), "exact")[:, target]
    score, baseline_score = float(logits[0]), float(logits[1])
    delta = float(attributions.double().sum()) - (score - baseline_score)
    return IGResult(attr.to_numpy(attributions), delta, score, baseline_score, attr.to_numpy(base[0]))


# Seconds per path point of a batched gradient pass, per model, timed on first use.
_point_seconds: weakref.WeakKeyDictionary[LoadedModel, float] = weakref.WeakKeyDictionary()


def estimate_seconds(model: LoadedModel, steps: int) -> float:
    """Expected time of `integrated_gradients`: steps x the time per point of a batched gradient pass,
    timed once per model after a warm-up pass (the first pass also builds the graph and kernels)."""
    if model not in _point_seconds:
        x = torch.zeros(IG_BATCH, model.channels, model.input_size, model.input_size)
        objective = attr.class_score(model, 0)
        attr.input_gradient(model, x[:1], False, objective, None)
        start = time.perf_counter()
        attr.input_gradient(model, x, False, objective, None)
        _point_seconds[model] = (time.perf_counter() - start) / IG_BATCH
    return steps * _point_seconds[model]
