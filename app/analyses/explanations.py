"""Every attribution method under one name, with its faithfulness curves, for pages that compare them.

`scored(model, x, method, ...)` returns the method's map AND its deletion/insertion curves
(app.analyses.faithfulness) in one result, so a cache keeps them together and a slow map
(Score-CAM, Integrated Gradients) is never computed twice to be scored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from app.analyses import attribution as attr
from app.analyses import cams, faithfulness
from app.analyses import integrated_gradients as ig
from app.networks.loaded import LoadedModel
from app.serving.progress import Progress

# In the order pages list them: gradient maps, then the CAM family, then the path method.
METHODS = (
    "saliency",
    "guided backprop",
    "guided Grad-CAM",
    "Grad-CAM",
    "Grad-CAM++",
    "LayerCAM",
    "Score-CAM",
    "Integrated Gradients",
)
# Maps that cost many passes (one per channel, or per path step) rather than one
SLOW = ("Score-CAM", "Integrated Gradients")
IG_STEPS = 32


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
) -> tuple[np.ndarray, ig.IGResult | None]:
    """One method's map for class `target` (CAMs at `layer`, default Grad-CAM's; IG from `baseline`
    in `path_steps` steps)."""
    _check(method)
    if method == "saliency":
        return attr.saliency(model, x, target), None
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
    *,
    baseline: str = "black",
    path_steps: int = IG_STEPS,
) -> Scored:
    """The map of `method` and its deletion/insertion curves at `steps` steps.

    progress(done, 100): the first half for a slow map, the rest (or all) for the curves.
    """
    _check(method)
    half = 50 if method in SLOW else 0
    values, detail = explain(
        model, x, method, target, layer, _phase(progress, 0, half), baseline=baseline, path_steps=path_steps
    )
    curves = faithfulness.deletion_insertion(model, x, values, target, steps, _phase(progress, half, 100))
    return Scored(method, values, curves, detail)


def estimate_seconds(
    model: LoadedModel,
    method: str,
    layer: str | None = None,
    steps: int = faithfulness.STEPS,
    path_steps: int = IG_STEPS,
) -> float:
    """Rough time of `scored`: the curves' forward passes, plus the map's passes for the slow methods."""
    _check(method)
    seconds = faithfulness.estimate_seconds(model, steps)
    if method == "Score-CAM":
        seconds += cams.estimate_score_cam_seconds(model, layer)
    elif method == "Integrated Gradients":
        seconds += ig.estimate_seconds(model, path_steps)
    return seconds
