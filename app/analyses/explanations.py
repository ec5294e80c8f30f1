"""Every attribution method under one name, with its faithfulness curves, for pages that compare them.

`scored(model, x, method, ...)` returns the method's map AND its deletion/insertion curves
(app.analyses.faithfulness) in one result, so a cache keeps them together and a slow map
(Score-CAM, Integrated Gradients) is never computed twice to be scored.

Besides the attribution maps, two maps from other pages can be scored: SmoothGrad (the
saliency tab's noisy average) and occlusion (the Occlusion page's probability drop, spread
onto the pixels: each pixel gets the mean drop of the windows that covered it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from app.analyses import attribution as attr
from app.analyses import cams, faithfulness, occlusion
from app.analyses import integrated_gradients as ig
from app.networks.loaded import LoadedModel
from app.serving.progress import Progress

# In the order pages list them: gradient maps, then the CAM family, then the path method.
METHODS = (
    "saliency",
    "SmoothGrad",
    "guided backprop",
    "guided Grad-CAM",
    "Grad-CAM",
    "Grad-CAM++",
    "LayerCAM",
    "Score-CAM",
    "Integrated Gradients",
    "occlusion",
)
# Maps that cost many passes (one per channel, noisy copy, path step or occluder position) rather than one
SLOW = ("SmoothGrad", "Score-CAM", "Integrated Gradients", "occlusion")
IG_STEPS = 32
SMOOTHGRAD_SAMPLES = 16
SMOOTHGRAD_NOISE = 0.15


def occlusion_defaults(model: LoadedModel) -> dict[str, int]:
    """The Occlusion page's first window and stride on this model (32 and 16 px at 224 px, 5 and 1 on
    28 px images): the settings at which the methods ranking takes in the occlusion map."""
    big = model.input_size > 64
    return {"window": 32 if big else 5, "stride": 16 if big else 1}


@dataclass(frozen=True)
class Scored:
    method: str
    values: np.ndarray  # the map: [H, W], or [C, H, W] for guided backprop, guided Grad-CAM and IG
    curves: faithfulness.Curves
    ig: ig.IGResult | None = None  # Integrated Gradients only: convergence delta and baseline


def _check(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")


def explain(
    model: LoadedModel,
    x: torch.Tensor,
    method: str,
    target: int,
    layer: str | None = None,
    progress: Progress | None = None,
    *,
    baseline: str = "black",
    path_steps: int = IG_STEPS,
    samples: int = SMOOTHGRAD_SAMPLES,
    noise: float = SMOOTHGRAD_NOISE,
    window: int | None = None,
    stride: int | None = None,
    fill: str = "zero",
    occlusion_precision: str = "auto",
) -> tuple[np.ndarray, ig.IGResult | None]:
    """One method's map for class `target` (CAMs at `layer`, default Grad-CAM's; IG from `baseline`
    in `path_steps` steps; SmoothGrad over `samples` copies with `noise`; occlusion with a `window`
    square moved by `stride` (default `occlusion_defaults`), filled with `fill`, in `occlusion_precision`)."""
    _check(method)
    if method == "saliency":
        return attr.saliency(model, x, target), None
    if method == "SmoothGrad":
        return attr.saliency(model, x, target, samples, noise, progress), None
    if method == "occlusion":
        defaults = occlusion_defaults(model)
        window, stride = window or defaults["window"], stride or defaults["stride"]
        result = occlusion.occlusion_map(model, x, window, stride, fill, occlusion_precision, progress)
        drop = occlusion.prob_drop_map(result, target)
        return occlusion.pixel_map(result, drop, tuple(x.shape[-2:])), None
    if method == "guided backprop":
        return attr.guided_backprop(model, x, target), None
    if method == "guided Grad-CAM":
        return attr.guided_grad_cam(model, x, target, layer), None
    if method == "Grad-CAM":
        return attr.grad_cam(model, x, target, layer), None
    if method == "Grad-CAM++":
        return cams.grad_cam_plus_plus(model, x, target, layer), None
    if method == "LayerCAM":
        return cams.layer_cam(model, x, target, layer), None
    if method == "Score-CAM":
        return cams.score_cam(model, x, target, layer, progress), None
    result = ig.integrated_gradients(model, x, target, baseline, path_steps, progress)
    return result.attributions, result


def _phase(progress: Progress | None, start: int, end: int) -> Progress | None:
    """A phase's progress(done, n) reported as start..end of one bar out of 100."""
    if progress is None:
        return None
    return lambda done, n: progress(start + round(done * (end - start) / max(n, 1)), 100)


def scored(
    model: LoadedModel,
    x: torch.Tensor,
    method: str,
    target: int,
    layer: str | None = None,
    steps: int = faithfulness.STEPS,
    progress: Progress | None = None,
    **options: Any,
) -> Scored:
    """The map of `method` and its deletion/insertion curves at `steps` steps; `options` are the
    method's own (`explain`'s keywords: baseline, path_steps, samples, noise, window, stride, fill,
    occlusion_precision).

    progress(done, 100): the first half for a slow map, the rest (or all) for the curves.
    """
    _check(method)
    half = 50 if method in SLOW else 0
    values, detail = explain(model, x, method, target, layer, _phase(progress, 0, half), **options)
    curves = faithfulness.deletion_insertion(model, x, values, target, steps, _phase(progress, half, 100))
    return Scored(method, values, curves, detail)


def estimate_seconds(
    model: LoadedModel,
    method: str,
    layer: str | None = None,
    steps: int = faithfulness.STEPS,
    path_steps: int = IG_STEPS,
    **options: Any,
) -> float:
    """Rough time of `scored`: the curves' forward passes, plus the map's passes for the slow methods
    (`options` as for `scored`)."""
    _check(method)
    seconds = faithfulness.estimate_seconds(model, steps)
    if method == "Score-CAM":
        seconds += cams.estimate_score_cam_seconds(model, layer)
    elif method == "Integrated Gradients":
        seconds += ig.estimate_seconds(model, path_steps)
    elif method == "SmoothGrad":
        seconds += attr.estimate_smoothgrad_seconds(model, options.get("samples", SMOOTHGRAD_SAMPLES))
    elif method == "occlusion":
        defaults = occlusion_defaults(model)
        window, stride = options.get("window") or defaults["window"], options.get("stride") or defaults["stride"]
        seconds += occlusion.estimate_seconds(model, window, stride, options.get("occlusion_precision", "auto"))
    return seconds
