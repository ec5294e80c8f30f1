"""One image, several networks: each one's top-5 and the same attribution method's map, comparable.

Networks see different inputs (224 px colour for the ImageNet models, 28 px grey for
the Fashion CNN) and their raw maps have unrelated units (a gradient of one network's
logit is not comparable to another's). So each map is first resized to one display
size, then divided by its own mean: every value says how many times the average pixel's
share of that network's map this pixel has (1 = average, 5 = five times the average),
which depends neither on the network's units nor on its input size. All maps are then
drawn on one colour scale (0 to a shared upper limit), so the same colour means the same
concentration in every network.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from app.analyses import attribution as attr
from app.networks.loaded import LoadedModel

METHODS = ("saliency", "guided backprop", "Grad-CAM")


@dataclass(frozen=True)
class View:
    """What one network makes of the image: top-5 (label, probability) and the map of its top class."""

    top5: tuple[tuple[str, float], ...]
    target: int
    raw: np.ndarray  # [H, W] at the network's input size, >= 0


def model_view(model: LoadedModel, x: torch.Tensor, method: str) -> View:
    """Top-5 and `method`'s map (|value|, max over colour channels) for the network's predicted class."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    probs = torch.softmax(model.logits(x)[0], 0).numpy()
    order = np.argsort(-probs, kind="stable")[: min(5, len(model.labels))]
    target = int(order[0])
    maps = attr.class_maps(model, x, target)
    raw = attr.magnitude(maps[method]) if maps[method].ndim == 3 else np.abs(maps[method])
    return View(tuple((model.labels[i], float(probs[i])) for i in order), target, raw.astype(np.float32))


def resize(values: np.ndarray, side: int) -> np.ndarray:
    """A [H, W] map resized to [side, side] (bilinear), for showing maps of different input sizes together."""
    t = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))[None, None]
    return F.interpolate(t, size=(side, side), mode="bilinear", align_corners=False)[0, 0].numpy()


def shared_scale(maps: list[np.ndarray], side: int = 224, percentile: float = 99.0) -> tuple[list[np.ndarray], float]:
    """Maps made comparable: resized to side x side, each divided by its own mean (so 1 = an average
    pixel of that map), and the common upper limit of the colour scale: the given percentile over all
    maps together (a few extreme pixels would otherwise leave the rest dark). An all-zero map stays zero.
    """
    scaled = []
    for values in maps:
        big = np.clip(resize(values, side), 0.0, None)
        mean = float(big.mean())
        scaled.append(big / mean if mean > 0 else big)
    top = float(np.percentile(np.concatenate([s.ravel() for s in scaled]), percentile)) if scaled else 0.0
    if top <= 0:
        top = max((float(s.max()) for s in scaled), default=0.0) or 1.0
    return scaled, top
