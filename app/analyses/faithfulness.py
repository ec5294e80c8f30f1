"""Is a map faithful to the network? Deletion and insertion curves (Petsiuk, Das & Saenko 2018, RISE).

A map claims some pixels matter more than others. Test the claim on the network itself:

- deletion: remove the pixels the map ranks highest first (replace them by a blurred copy
  of the image), in `steps` equal steps, and record the class probability after each step.
  A faithful map makes it fall fast: a SMALL area under the curve is good.
- insertion: start from the blurred image and put the original pixels back, highest
  first. A faithful map makes the probability rise fast: a LARGE area is good.

Areas use the trapezoid rule with the share of pixels changed (0..1) on the x axis, so they
lie in 0..1. Caveat: the half-blurred images are unlike any training image, so a network may
react to the artificial edges rather than to the lost evidence; ROAD (Rong et al. 2022) fills
removed pixels by interpolating their neighbours to reduce that (not done here).

Speed: the two curves share their ends (deletion's first image is insertion's last and vice
versa), so 2 * steps distinct images run, in batches of about 250 GMAC, channels_last, in one
autocast context, in bf16 where a one-time measurement finds it faster and the network is big
(the rules of app.analyses.occlusion): a one-image-at-a-time loop is the benchmark's reference
(benchmarks/faithfulness.py). The work itself is the limit: 100 VGG-16 passes are 1.5 TMAC.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from app.analyses import cams, occlusion
from app.networks.loaded import LoadedModel
from app.serving import precision as prec
from app.serving import sharing
from app.serving.progress import Progress

STEPS = 50

# What the curves mean and where they mislead, in words for students (every page that shows them).
MEANING = (
    "**Is the map telling the truth about the network?** Deletion removes the pixels the map calls most "
    "important first (they become a blurred copy), in 50 steps, and plots the class probability: if the "
    "map is right it falls fast, so a *small* area under the red curve is good. Insertion starts from "
    "the blurred image and puts the most important pixels back first: the green curve should rise fast, "
    "so a *large* area is good. The score is insertion area − deletion area."
)
CAVEATS = (
    "Caveats: half-blurred images look like nothing the network was trained on, so part of a drop can "
    "be the network reacting to strange patches rather than to missing evidence (ROAD, Rong et al. 2022, "
    "fills removed pixels from their neighbours to reduce this; not used here). Blocky maps (the CAMs, "
    "occlusion) leave the order of the pixels inside one cell to chance (here: reading order), and the "
    "score is for this image and this class only: rank on several images before trusting a method."
)


@dataclass(frozen=True)
class Curves:
    fractions: np.ndarray  # [steps + 1], share of pixels removed (deletion) or inserted, 0..1
    deletion: np.ndarray  # [steps + 1], class probability; [0] is the image, [-1] the blurred image
    insertion: np.ndarray  # [steps + 1], class probability; [0] is the blurred image, [-1] the image
    precision: str  # "fp32" or "bf16": what the forward passes ran in

    @property
    def deletion_auc(self) -> float:
        """Area under the deletion curve, 0..1: lower = the map found the evidence."""
        return area(self.deletion)

    @property
    def insertion_auc(self) -> float:
        """Area under the insertion curve, 0..1: higher = the map found the evidence."""
        return area(self.insertion)

    @property
    def score(self) -> float:
        """Insertion area minus deletion area, -1..1: one number to rank maps by (higher is better)."""
        return self.insertion_auc - self.deletion_auc


def area(curve: np.ndarray) -> float:
    """Trapezoid area under a curve sampled at equal steps of x on [0, 1]."""
    curve = np.asarray(curve, dtype=np.float64)
    return float(((curve[1:] + curve[:-1]) / 2).sum() / (len(curve) - 1))


def pixel_ranks(saliency: np.ndarray) -> torch.Tensor:
    """Each pixel's rank by importance, [H, W] (0 = most important). [C, H, W] maps are ranked by
    their magnitude (largest |value| over channels), as they are shown. Ties keep reading order."""
    values = np.asarray(saliency, dtype=np.float32)
    if values.ndim == 3:
        values = np.abs(values).max(axis=0)
    order = np.argsort(-values.ravel(), kind="stable")
    ranks = np.empty_like(order)
    ranks[order] = np.arange(order.size)
    return torch.from_numpy(ranks.reshape(values.shape))


def counts(pixels: int, steps: int) -> torch.Tensor:
    """How many pixels are changed after each of 0..steps steps: [steps + 1], 0 to all."""
    return torch.tensor([round(k * pixels / steps) for k in range(steps + 1)])


def step_images(
    x: torch.Tensor, fill: torch.Tensor, ranks: torch.Tensor, changed: torch.Tensor, insert: torch.Tensor
) -> torch.Tensor:
    """[B, C, H, W] for B steps: image i has its `changed[i]` top-ranked pixels taken from fill and
    the rest from x (deletion, insert[i] False), or its top pixels from x and the rest from fill
    (insertion, insert[i] True)."""
    top = ranks[None] < changed[:, None, None]  # [B, H, W]
    take_x = top[:, None] == insert[:, None, None, None]
    return torch.where(take_x, x, fill)


def default_batch(model: LoadedModel) -> int:
    """Images per forward pass: about 250 GMAC per batch (16 VGG-16 images at 224 px), 4 to 64.

    Measured on VGG-16, 100 images in bf16, on the shared 2-core machine at load 9-12: batches of
    8 / 16 / 32 took 10.7 / 9.7 / 8.8 CPU s, and in fp32 4 images per batch needed 35 CPU s against 26
    at 16. Larger
    batches gain little more and hold more memory (a 16-image batch's first activations are 200 MB
    in bf16), which a server with a class on it must share.
    """
    macs = occlusion.network_macs(model)
    return int(np.clip(2 ** round(math.log2(max(2.5e11 / max(macs, 1), 1))), 4, 64))


# Images per timed pass when choosing the precision: enough to show batching's effect, cheap enough
# for the first request of a server (about 2 s in all on VGG-16)
MEASURE_BATCH = 4


def precision_timings(model: LoadedModel) -> dict[str, float]:
    """Seconds per image of the curves' forward passes in each precision this device offers, measured
    once per model (app.serving.precision.timings) after one image that casts the weights."""
    images = torch.zeros(MEASURE_BATCH, model.channels, model.input_size, model.input_size)

    def run(precision: str) -> float:
        with torch.no_grad(), prec.autocast(model.device, precision):
            probabilities(model, images[:1], 0)
            start = time.perf_counter()
            probabilities(model, images, 0)
            return time.perf_counter() - start

    seconds = prec.timings(("faithfulness", model.name, model.input_size, str(model.device)), run)
    return {p: t / MEASURE_BATCH for p, t in seconds.items()}


def resolve_precision(model: LoadedModel, precision: str = "auto") -> str:
    """The precision the curves run in. "auto": fp32 for small networks (occlusion's rule: bf16 does not
    pay below AUTO_BF16_MIN_MACS per image) and for models whose bulk analyses stay in fp32; otherwise
    whichever of fp32 and bf16 this machine runs faster, measured once per model."""
    if precision != "auto":
        return prec.resolve(precision, model.device)
    if occlusion.network_macs(model) < occlusion.AUTO_BF16_MIN_MACS:
        return "fp32"
    if prec.resolve(model.precision, model.device) == "fp32":
        return "fp32"
    seconds = precision_timings(model)
    return min(seconds, key=seconds.__getitem__)


def probabilities(model: LoadedModel, images: torch.Tensor, target: int) -> torch.Tensor:
    """Softmax probability of `target` for a batch of model inputs, [B] fp32 (the page's probability),
    in the caller's precision (autocast context)."""
    with sharing.forward():
        logits = model.module(images.to(model.device, memory_format=torch.channels_last)).float()
    return torch.softmax(logits, 1)[:, target].cpu()


def deletion_insertion(
    model: LoadedModel,
    x: torch.Tensor,
    saliency: np.ndarray,
    target: int,
    steps: int = STEPS,
    progress: Progress | None = None,
    *,
    precision: str = "auto",
    batch: int | None = None,
) -> Curves:
    """Deletion and insertion curves of the map `saliency` ([H, W] or [C, H, W] at x's size) for class
    `target`, removed pixels filled with occlusion's blurred copy of x. progress(done, total images)."""
    x = x.detach().float().cpu()
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"x must be one image [1, C, H, W], got {tuple(x.shape)}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if not 0 <= target < len(model.labels):
        raise ValueError(f"target {target} is not a class index of {model.name}")
    ranks = pixel_ranks(saliency)
    if tuple(ranks.shape) != tuple(x.shape[-2:]):
        raise ValueError(f"the map is {tuple(ranks.shape)}, the image {tuple(x.shape[-2:])}: give a full-size map")
    fill = occlusion.make_baseline(model, x, "blur")
    changed = counts(ranks.numel(), steps)
    # Distinct images: deletion steps 0..steps-1 (step 0 = x), then insertion steps 0..steps-1
    # (step 0 = fill); deletion's last = fill = insertion's first, insertion's last = x.
    jobs = [(insert, int(n)) for insert in (False, True) for n in changed[:steps]]
    resolved = resolve_precision(model, precision)
    size = batch or default_batch(model)
    probs = []
    # One autocast context for all batches: it casts the weights to bf16 once, not per batch. no_grad, not
    # inference_mode: autocast keeps its bf16 weight copies only outside inference mode.
    with torch.no_grad(), prec.autocast(model.device, resolved):
        for first in range(0, len(jobs), size):
            insert, n = zip(*jobs[first : first + size], strict=True)
            images = step_images(x, fill, ranks, torch.tensor(n), torch.tensor(insert))
            probs.append(probabilities(model, images, target))
            if progress is not None:
                progress(min(first + size, len(jobs)), len(jobs))
    p = torch.cat(probs).double().numpy()
    deletion = np.append(p[:steps], p[steps])
    insertion = np.append(p[steps:], p[0])
    return Curves(np.linspace(0, 1, steps + 1), deletion, insertion, resolved)


def estimate_seconds(model: LoadedModel, steps: int = STEPS) -> float:
    """Rough time of `deletion_insertion`: 2 * steps forward passes at the speed of the precision they
    will run in (bf16: as measured to choose it; fp32: a batched pass, timed once per model)."""
    if resolve_precision(model) == "bf16":
        return 2 * steps * precision_timings(model)["bf16"]
    return 2 * steps * cams.forward_seconds(model)
