"""Which input pixels drive a score: saliency, guided backpropagation, Grad-CAM.

Each map is one forward and one backward pass through the network. They run on
this module's own copies of the model's fx graph, made from the graph that
`app.networks.activations` traced at model load (re-tracing is avoided because fx patches
`nn.Module.__call__` process-wide while it traces, which would disturb other
threads' forward passes). The copies call the very same layer objects, so no
weights are duplicated, but no hook is ever registered on the shared module and
nothing in it (ReLU flags, weights, `.grad`) changes. For guided backpropagation
the copy's ReLU calls are replaced by `guided_relu`, a ReLU whose backward pass
lets only positive gradient through. Passes run under `model.lock`, as every use
of the shared layers must (another analysis may briefly hook them).

Gradients are taken with `torch.autograd.grad` with respect to a fresh leaf copy
of the input only, so parameters never accumulate `.grad`. Everything runs in
fp32, with autocast switched off even inside a caller's autocast: the maps match
captum's (bit for bit in the benchmark). bf16 autocast was measured and left out
(benchmarks/attribution.py as of commit d614059):
on this CPU (AVX-512-BF16, no AMX) it did not speed up single maps, and it
reorders the tiny input gradients (rank correlation with the fp32 map 0.40 for
saliency and 0.86 for guided backprop on VGG-16; 0.70 for Grad-CAM on a trained
Fashion-MNIST CNN), which is too unfaithful for a teaching tool.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from torch import fx, nn

from app.networks.activations import derived
from app.networks.loaded import LoadedModel
from app.serving import sharing
from app.serving.progress import Progress


class _GuidedReLU(torch.autograd.Function):
    """ReLU forward (clamped to 0..ceiling, e.g. 6 for ReLU6); backward zeroes the gradient where
    the unit was off (output 0, as a ReLU does) AND where the incoming gradient is negative (the
    "guided" part).

    A ReLU6 unit saturated at 6 passes gradient too: ReLU6's own derivative is 0 above 6, so
    the strict rule (pass only where 0 < x < 6) blanks every saturated unit, and with it the
    projection of exactly the units that fire hardest: the best patches of an EfficientNet-Lite
    unit all sit at the ceiling, and their projections came out flat grey. Guided
    backpropagation is a picture of which input pattern drives a unit, not an exact gradient;
    Springenberg et al.'s rule asks only whether the unit was on, and a saturated unit is as on
    as it gets.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor, ceiling: float | None) -> torch.Tensor:
        out = x.clamp(0, ceiling)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (out,) = ctx.saved_tensors
        return grad.clamp(min=0) * (out > 0), None


def guided_relu(x: torch.Tensor) -> torch.Tensor:
    """ReLU whose backward pass is Springenberg et al.'s guided rule."""
    return _GuidedReLU.apply(x, None)


def guided_relu6(x: torch.Tensor) -> torch.Tensor:
    """ReLU6 with the guided backward rule of a ReLU (MobileNet/EfficientNet-Lite activations):
    saturated units pass gradient too (see `_GuidedReLU`)."""
    return _GuidedReLU.apply(x, 6.0)


_RELU_FUNCTIONS = (F.relu, torch.relu)
_RELU6_FUNCTIONS = (F.relu6,)


def _guide(model: LoadedModel) -> Callable[[fx.Graph], None]:
    """A graph edit that turns every ReLU / ReLU6 (module or function call) into its guided version."""

    def guided(node: fx.Node) -> Callable[[torch.Tensor], torch.Tensor] | None:
        if node.op == "call_module":
            m = model.module.get_submodule(node.target)
            return guided_relu6 if isinstance(m, nn.ReLU6) else guided_relu if isinstance(m, nn.ReLU) else None
        if node.op == "call_function":
            return (
                guided_relu6
                if node.target in _RELU6_FUNCTIONS
                else guided_relu
                if node.target in _RELU_FUNCTIONS
                else None
            )
        return None

    def edit(graph: fx.Graph) -> None:
        for node in list(graph.nodes):
            rule = guided(node)
            if rule is not None:
                with graph.inserting_after(node):
                    replacement = graph.call_function(rule, (node.args[0],))
                node.replace_all_uses_with(replacement)
                graph.erase_node(node)

    return edit


def private_graph(model: LoadedModel, guided: bool, upto: str | None = None) -> fx.GraphModule:
    """A private graph of the model returning {layer name: output}.

    upto: return only that layer and drop everything after it (a channel's
    guided backprop needs no forward pass through the classifier).
    guided: ReLU calls become `guided_relu`.
    Built once per (model, guided, upto) in the model's cache of derived graphs;
    GraphModules hold no per-call state, so sharing them between threads is safe.
    """
    return model.cached(("attribution", guided, upto), lambda: derived(model, upto, _guide(model) if guided else None))


def no_autocast(model: LoadedModel) -> torch.autocast:
    """fp32 even inside a caller's autocast: the maps are meant to be exact."""
    return torch.autocast(model.device.type, enabled=False)


def input_leaf(model: LoadedModel, x: torch.Tensor, requires_grad: bool = True) -> torch.Tensor:
    """A fresh fp32 leaf copy of x that gradients are taken with respect to (call it in model.gradient_pass())."""
    leaf = x.detach().to(model.device, torch.float32, memory_format=torch.channels_last).clone()
    return leaf.requires_grad_(requires_grad)


def logits_layer(model: LoadedModel) -> str:
    """The last layer's name: its outputs are the class scores (logits) that the maps explain."""
    return model.layers[-1].name


def check_target(model: LoadedModel, target: int) -> int:
    """`target` as an int, or a ValueError naming the valid range: a wrong class index is a caller's bug."""
    if not 0 <= int(target) < len(model.labels):
        raise ValueError(f"target {target} is not a class index of {model.name} (0..{len(model.labels) - 1})")
    return int(target)


def input_gradient(
    model: LoadedModel,
    x: torch.Tensor,
    guided: bool,
    objective: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    upto: str | None,
) -> torch.Tensor:
    """d objective / d input, [N, C, H, W] fp32 on CPU, through `private_graph` (guided: ReLUs use the
    guided rule; upto: the graph stops at that layer). The one gradient pass every input-gradient map uses."""
    graph = private_graph(model, guided, upto)
    with model.gradient_pass():
        leaf = input_leaf(model, x)
        score = objective(graph(leaf))
        (grad,) = torch.autograd.grad(score, [leaf])
    return grad.float().cpu()


def class_score(model: LoadedModel, target: int) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
    """The objective of a class map for `input_gradient`: the class logit, summed over the batch.

    Summing gives each sample its own gradient: samples do not interact in an eval-mode network.
    """
    name = logits_layer(model)
    return lambda outs: outs[name][:, target].float().sum()


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A map as a contiguous float32 NumPy array, detached and on the CPU: what every analysis returns."""
    return np.ascontiguousarray(t.detach().float().cpu().numpy())


# Seconds of one saliency pass (forward + backward, one input) per model, timed on first use.
_pass_seconds: weakref.WeakKeyDictionary[LoadedModel, float] = weakref.WeakKeyDictionary()


def estimate_smoothgrad_seconds(model: LoadedModel, samples: int) -> float:
    """Expected time of `saliency(..., smoothgrad_samples=samples)`: samples x one gradient pass.

    The pass is timed once per model on a blank input (0.4 s on VGG-16 on the development
    machine, a few ms on the Fashion CNN), so a page can warn before a long run.
    """
    if model not in _pass_seconds:
        x = torch.zeros(1, model.channels, model.input_size, model.input_size)
        start = time.perf_counter()
        input_gradient(model, x, False, class_score(model, 0), None)
        _pass_seconds[model] = time.perf_counter() - start
    return samples * _pass_seconds[model]


def saliency(
    model: LoadedModel,
    x: torch.Tensor,
    target: int,
    smoothgrad_samples: int = 0,
    noise: float = 0.15,
    progress: Progress | None = None,
    *,
    seed: int = 0,
    batch: int = 4,
) -> np.ndarray:
    """Simonyan et al.'s saliency map: |d score / d pixel|, max over colour channels. [H, W].

    How much a tiny change of each pixel would change the class score (the logit,
    not the softmax, so other classes do not leak in). With smoothgrad_samples > 0
    this is SmoothGrad (Smilkov et al. 2017): the mean of |gradient| over copies of
    x with Gaussian noise of std noise * (x.max() - x.min()) added, which removes
    much of the speckle of a single gradient. The noise comes from a generator
    seeded with `seed`, so the same call gives the same map (what caching needs).
    progress(done, total) is called after each batch of noisy copies.
    """
    target = check_target(model, target)
    objective = class_score(model, target)
    if smoothgrad_samples <= 0:
        grad = input_gradient(model, x, False, objective, None)
        return to_numpy(grad[0].abs().amax(0))
    x = x.detach().float().cpu()
    sigma = noise * float(x.max() - x.min())
    generator = torch.Generator().manual_seed(seed)
    noises = torch.randn((smoothgrad_samples, *x.shape[1:]), generator=generator) * sigma
    total = torch.zeros(x.shape[1:])
    for start in range(0, smoothgrad_samples, batch):
        chunk = x + noises[start : start + batch]
        total += input_gradient(model, chunk, False, objective, None).abs().sum(0)
        if progress is not None:
            progress(min(start + batch, smoothgrad_samples), smoothgrad_samples)
    return to_numpy((total / smoothgrad_samples).amax(0))


def guided_backprop(
    model: LoadedModel,
    x: torch.Tensor,
    target: int | None = None,
    layer: str | None = None,
    channel: int | None = None,
) -> np.ndarray:
    """Springenberg et al.'s guided backpropagation: a signed gradient image [C, H, W].

    The gradient of an objective with respect to the input, where every ReLU on
    the way back passes only gradient that is positive AND flows into a unit that
    was active. What survives are the input patterns that excite the objective,
    which is why the maps look like sharp edges of the object.

    Give exactly one of: `target` (objective = that class's logit), or `layer` and
    `channel` (objective = the SUM of that channel's feature map at that layer,
    i.e. the whole map, not one position; for a fully connected layer, the unit).
    """
    if target is not None and (layer is not None or channel is not None):
        raise ValueError("give either target, or layer and channel, not both")
    if target is not None:
        target = check_target(model, target)
        grad = input_gradient(model, x, True, class_score(model, target), None)
        return to_numpy(grad[0])
    if layer is None or channel is None:
        raise ValueError("give either target, or layer and channel")
    info = model.layer(layer)
    if not 0 <= channel < info.out_shape[0]:
        raise ValueError(f"{layer} has {info.out_shape[0]} channels; got channel {channel}")
    grad = input_gradient(model, x, True, lambda outs: outs[layer][:, channel].float().sum(), layer)
    return to_numpy(grad[0])


def guided_units(
    model: LoadedModel,
    x: torch.Tensor,
    layer: str,
    channel: int,
    positions: list[tuple[int, int]] | None = None,
    *,
    check: bool = True,
) -> np.ndarray:
    """Guided backpropagation from ONE unit per image, [N, C, H, W]: Zeiler & Fergus's projection.

    The objective for image i is channel `channel` of `layer` at positions[i] = (y, x)
    only (a fully connected layer has no positions: give None). Unlike the channel
    map of `guided_backprop`, which sums the whole feature map, this shows what the
    unit saw at the one place it fired, so it can be cropped to that unit's receptive
    field. All images go through one batched pass; summing the per-image objectives
    still gives each image its own gradient, since samples do not interact in eval mode.
    check=False skips checking positions against the layer's map size at the model's input
    size (for inputs of another size, e.g. a unit's receptive field cut out of an image).
    """
    info = model.layer(layer)
    if not 0 <= channel < info.out_shape[0]:
        raise ValueError(f"{layer} has {info.out_shape[0]} channels; got channel {channel}")
    n = len(x)
    if info.spatial:
        if positions is None or len(positions) != n:
            raise ValueError(f"{layer} is spatial: give one (y, x) position per image ({n})")
        _, h, w = info.out_shape
        if check and any(not (0 <= y < h and 0 <= x_ < w) for y, x_ in positions):
            raise ValueError(f"positions must lie inside {layer}'s {h}x{w} map")
        rows = torch.arange(n)
        ys = torch.tensor([p[0] for p in positions])
        xs = torch.tensor([p[1] for p in positions])

        def objective(outs: dict[str, torch.Tensor]) -> torch.Tensor:
            return outs[layer][rows, channel, ys, xs].float().sum()
    else:

        def objective(outs: dict[str, torch.Tensor]) -> torch.Tensor:
            return outs[layer][:, channel].float().sum()

    return to_numpy(input_gradient(model, x, True, objective, layer))


def layer_output(model: LoadedModel, x: torch.Tensor, layer: str) -> torch.Tensor:
    """One layer's output [N, ...] fp32, running the network only up to that layer."""
    graph = private_graph(model, False, layer)
    with model.lock, sharing.forward(), torch.inference_mode(), no_autocast(model):
        out = graph(x.to(model.device, memory_format=torch.channels_last))[layer]
    return out.float().cpu()


def channel_strengths(model: LoadedModel, x: torch.Tensor, layer: str) -> np.ndarray:
    """Mean activation of each channel of `layer` for this image, [channels]."""
    out = layer_output(model, x, layer)[0]
    return to_numpy(out.flatten(1).mean(1) if out.dim() > 1 else out)


def most_active_channel(model: LoadedModel, x: torch.Tensor, layer: str) -> int:
    """The channel with the largest mean activation: the default unit to explain."""
    return int(np.argmax(channel_strengths(model, x, layer)))


def last_conv(model: LoadedModel) -> str:
    """Name of the last convolution: the most abstract features that still form a grid."""
    return [row.name for row in model.layers if row.kind == "conv"][-1]


# layer-table kinds of activation functions (app.networks.layers names unknown modules by their class)
_ACTIVATION_KINDS = ("relu", "hardswish", "silu", "gelu", "leakyrelu", "elu")


def default_cam_layer(model: LoadedModel) -> str:
    """Grad-CAM's default layer: the rectified output of the last convolution (relu5_3 in
    VGG-16, relu2_2 in the Fashion CNN, head.relu in EfficientNet-Lite0, ResNet's last
    block output layer4.1.relu_1, the Hardswish after MobileNetV3's last conv), the
    feature maps Selvaraju et al. use.

    Not the raw conv output: with batch norm it comes before the normalisation,
    whose scale and shift change the sign of what the class "wants", and in the
    trained Fashion CNN Grad-CAM at conv2_2 was all zero for every test image.
    """
    rows = model.layers
    last = [row.name for row in rows].index(last_conv(model))
    for row in rows[last + 1 :]:
        if row.kind in _ACTIVATION_KINDS and row.spatial:
            return row.name
        if row.kind not in ("bn", "dropout", "add"):  # a residual block's output is its ReLU after the add
            break
    return rows[last].name


def spatial_layers(model: LoadedModel) -> list[str]:
    """Layers Grad-CAM can use: those whose output is still a [C, H, W] map."""
    return [row.name for row in model.layers if row.spatial]


def cam_layer(model: LoadedModel, layer: str | None) -> str:
    """The layer a CAM method reads (`default_cam_layer` when None); a ValueError if it has no spatial map."""
    layer = layer or default_cam_layer(model)
    if not model.layer(layer).spatial:
        raise ValueError(f"Grad-CAM needs a spatial layer; {layer} has output shape {model.layer(layer).out_shape}")
    return layer


def _plain_pass(
    model: LoadedModel, x: torch.Tensor, target: int, layer: str, with_input: bool
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """One forward/backward of the class score: (input gradient or None, Grad-CAM [1, 1, H, W])."""
    graph = private_graph(model, False, None)
    with model.gradient_pass():
        leaf = input_leaf(model, x, requires_grad=with_input)
        outs = graph(leaf)
        act = outs[layer]
        wrt = [act, leaf] if with_input else [act]
        grads = torch.autograd.grad(outs[logits_layer(model)][:, target].float().sum(), wrt)
    weights = grads[0].float().mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * act.detach().float()).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)
    return (grads[1].float().cpu() if with_input else None), cam.cpu()


def grad_cam(model: LoadedModel, x: torch.Tensor, target: int, layer: str | None = None) -> np.ndarray:
    """Selvaraju et al.'s Grad-CAM at `layer` (default: `default_cam_layer`), [H, W] at input size.

    Each channel of the layer is weighted by the mean gradient of the class score
    over its map (how much the class wants more of that channel), the weighted
    maps are summed, negative evidence is cut off (ReLU), and the coarse result is
    upsampled bilinearly to the input size. Not normalised: values are comparable
    between classes for the same image and layer.
    """
    _, cam = _plain_pass(model, x, check_target(model, target), cam_layer(model, layer), False)
    return to_numpy(cam[0, 0])


def guided_grad_cam(model: LoadedModel, x: torch.Tensor, target: int, layer: str | None = None) -> np.ndarray:
    """Guided Grad-CAM: guided backprop for the class times its Grad-CAM map, [C, H, W].

    Grad-CAM says where the class evidence is (coarse, class-specific); guided
    backprop says which fine edges matter (sharp, barely class-specific); the
    product keeps the fine detail only where the class evidence is.
    """
    cam = grad_cam(model, x, target, layer)
    return guided_backprop(model, x, target) * cam[None]


def class_maps(model: LoadedModel, x: torch.Tensor, target: int, layer: str | None = None) -> dict[str, np.ndarray]:
    """All four class maps at once, for side-by-side comparison, in two passes instead of four.

    {"saliency": [H, W], "guided backprop": [C, H, W], "Grad-CAM": [H, W],
    "guided Grad-CAM": [C, H, W]}, equal to the single-method functions: saliency
    and Grad-CAM come from the same plain backward pass, guided backprop from one
    guided pass.
    """
    target = check_target(model, target)
    grad, cam = _plain_pass(model, x, target, cam_layer(model, layer), True)
    guided = input_gradient(model, x, True, class_score(model, target), None)[0]
    return {
        "saliency": to_numpy(grad[0].abs().amax(0)),
        "guided backprop": to_numpy(guided),
        "Grad-CAM": to_numpy(cam[0, 0]),
        "guided Grad-CAM": to_numpy(guided * cam[0]),
    }


# ---- turning maps into pictures -------------------------------------------------


def unit_range(values: np.ndarray, percentile: float = 100.0) -> np.ndarray:
    """Scale a map to 0..1: min -> 0, the given percentile -> 1 (higher values clip).

    A percentile below 100 (e.g. 99) stops a handful of extreme gradients from
    making the rest of a saliency map look black. A constant map becomes all 0.
    """
    values = np.asarray(values, dtype=np.float32)
    lo, hi = float(values.min()), float(np.percentile(values, percentile))
    if hi <= lo:
        return np.zeros_like(values)
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0)


def magnitude(grad: np.ndarray) -> np.ndarray:
    """Grey magnitude map of a [C, H, W] gradient: |gradient| max over channels, [H, W]."""
    return np.abs(grad).max(axis=0)


def gradient_image(grad: np.ndarray, percentile: float = 100.0) -> np.ndarray:
    """A [C, H, W] signed gradient as an RGB picture [H, W, 3] in 0..1.

    Zero maps to mid-grey and +-(the given percentile of |gradient|) to 1 or 0
    (larger values clip), so the sign of each colour channel's gradient stays
    visible: the usual way to show guided backprop. A percentile below 100 lifts
    the contrast that a few extreme values would otherwise squash. Single-channel
    gradients become grey pictures.
    """
    grad = np.asarray(grad, dtype=np.float32)
    scale = float(np.percentile(np.abs(grad), percentile))
    img = np.clip(0.5 + 0.5 * grad / scale, 0.0, 1.0) if scale > 0 else np.full_like(grad, 0.5)
    img = np.transpose(img, (1, 2, 0))
    return np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps, the measure Adebayo et al. use to
    compare saliency maps: 1 = same pixel ranking, about 0 = unrelated."""
    return float(spearmanr(np.ravel(a), np.ravel(b)).statistic)
