"""Images the network dreams up: feature visualisation, class models, DeepDream, style transfer.

All four turn the usual question around: instead of feeding a picture and
reading the network, they change a picture by gradient ascent until the network
responds in a chosen way.

- `visualise`: the picture that makes one unit (a channel of a layer, or a class
  logit) fire most (Erhan et al. 2009; Simonyan et al. 2014 for class models),
  made the way Olah et al., "Feature Visualization" (Distill, 2017) and their
  Lucid library do it: a Fourier-space image with a 1/f spectrum, decorrelated
  colours, and random transformations each step so that only patterns that
  survive small shifts, zooms and rotations grow.
- `deep_dream`: the user's picture, changed to make a layer's activations louder,
  octave by octave (Mordvintsev et al., 2015).
- `style_transfer`: Gatys et al. (2016): the content of one picture (deep
  features) with the style of another (Gram matrices of features of several
  layers).

How they run, and why:
- Only up to the deepest layer they need, on a private fx graph derived from the
  load-time trace (`app.networks.activations.derived`): no hook is ever put on the shared
  module and nothing in it (weights, `requires_grad`, ReLU flags) changes.
  Gradients are taken with `torch.autograd.grad` with respect to the image only,
  so parameters never get a `.grad`.
- `model.lock` is held for one forward/backward step, not for the whole run, so
  the other students' pages keep working while a dream grows.
- All randomness comes from a generator seeded with `seed`: same call, same picture,
  whatever else runs in other threads.
- `progress(done, total)` is called after every step; it cancels a run by raising
  `app.base.errors.Cancelled` (see app/serving/jobs.py). `preview(dream)` gets the picture so far
  every few steps.
- Everything is fp32 (gradients of a picture need it; autocast is switched off).
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import fx, nn

from app.base.paths import ASSETS
from app.networks.activations import derived
from app.networks.loaded import LoadedModel
from app.serving.progress import Progress

Preview = Callable[["Dream"], None]

ACTIVATION_KINDS = ("relu", "relu6", "silu", "hardswish", "gelu")


@dataclass(frozen=True)
class Dream:
    """A picture made by optimisation.

    image: (H, W, C) float32 in [0, 1] in the model's own pixel space (C = the
    model's input channels): `to_input(model, image)` is exactly what the network
    saw. history: per-step float lists ("objective" for visualisation and
    DeepDream, "style", "content" and "total" for style transfer).
    """

    image: np.ndarray
    history: dict[str, list[float]]
    steps: int
    seconds: float

    def png(self) -> bytes:
        """The picture as PNG bytes (grey for one-channel models)."""
        pixels = (np.clip(self.image, 0, 1) * 255).round().astype(np.uint8)
        picture = Image.fromarray(pixels[..., 0], "L") if pixels.shape[2] == 1 else Image.fromarray(pixels, "RGB")
        buf = io.BytesIO()
        picture.save(buf, format="PNG")
        return buf.getvalue()


def to_input(model: LoadedModel, image: np.ndarray) -> torch.Tensor:
    """A (H, W, C) [0, 1] picture as the network's input [1, C, H, W]: (pixel - mean) / std."""
    pixels = torch.as_tensor(np.ascontiguousarray(image), dtype=torch.float32).permute(2, 0, 1)[None]
    return _normalise(model, pixels)


# ---- private graphs and the exact-gradient context -----------------------------------


class _RedirectedClamp(torch.autograd.Function):
    """ReLU / ReLU6 (a clamp to [low, high]) whose backward pass never goes silent: Lucid's
    `redirected_relu_grad` and `redirected_relu6_grad` (Olah et al. 2017).

    A unit whose ReLU is off everywhere in the starting picture has zero gradient
    and would never switch on; a ReLU6 is also silent where it is saturated at 6.
    Where the ordinary gradient of a sample is all zero, this one also lets through,
    outside the linear range, the part of the gradient that pushes the input back
    into it (up from below `low`, down from above `high`); otherwise it is the
    ordinary gradient. Signs: the optimiser descends on -objective, so a negative
    gradient raises the input.
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor, low: float, high: float | None
    ) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.low, ctx.high = low, high
        return x.clamp(min=low, max=high)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (x,) = ctx.saved_tensors
        low, high = ctx.low, ctx.high
        linear = x > low if high is None else (x > low) & (x < high)
        ordinary = grad * linear
        towards = linear | ((x <= low) & (grad < 0))
        if high is not None:
            towards = towards | ((x >= high) & (grad > 0))
        silent = ordinary.flatten(1).abs().amax(1) == 0
        return torch.where(silent.view(-1, *[1] * (grad.dim() - 1)), grad * towards, ordinary), None, None


def redirected_relu(x: torch.Tensor) -> torch.Tensor:
    return _RedirectedClamp.apply(x, 0.0, None)


def redirected_clamp(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """ReLU6 (low 0, high 6) or any hardtanh, with the redirected gradient."""
    return _RedirectedClamp.apply(x, float(low), float(high))


_RELU_FUNCTIONS = (F.relu, torch.relu)


def _clamp_bounds(model: LoadedModel, node: fx.Node) -> tuple[float, float | None] | None:
    """(low, high) of a ReLU (high None), ReLU6 or hardtanh node (module or function call), else None."""
    if node.op == "call_module":
        module = model.module.get_submodule(node.target)
        if isinstance(module, nn.ReLU):
            return 0.0, None
        if isinstance(module, nn.Hardtanh):  # nn.ReLU6 is a Hardtanh(0, 6)
            return float(module.min_val), float(module.max_val)
    elif node.op == "call_function":
        if node.target in _RELU_FUNCTIONS:
            return 0.0, None
        if node.target is F.relu6:
            return 0.0, 6.0
        if node.target is F.hardtanh:
            args = dict(zip(("input", "min_val", "max_val"), node.args, strict=False)) | dict(node.kwargs)
            return float(args.get("min_val", -1.0)), float(args.get("max_val", 1.0))
    return None


def _edit(model: LoadedModel, names: tuple[str, ...], redirect: bool) -> Callable[[fx.Graph], None]:
    """Keep only the outputs `names`; with `redirect`, every ReLU, ReLU6 and hardtanh becomes redirected."""

    def edit(graph: fx.Graph) -> None:
        output = next(n for n in graph.nodes if n.op == "output")
        outputs = output.args[0]
        output.args = ({name: outputs[name] for name in names},)
        if not redirect:
            return
        for node in list(graph.nodes):
            bounds = _clamp_bounds(model, node)
            if bounds is None:
                continue
            low, high = bounds
            with graph.inserting_after(node):
                replacement = (
                    graph.call_function(redirected_relu, (node.args[0],))
                    if high is None
                    else graph.call_function(redirected_clamp, (node.args[0], low, high))
                )
            node.replace_all_uses_with(replacement)
            graph.erase_node(node)

    return edit


def _graph(model: LoadedModel, layers: Sequence[str], redirect: bool = False) -> fx.GraphModule:
    """A private graph returning {layer: output} for `layers` only, with everything after the deepest dropped.

    redirect: ReLUs pass gradient even where they are off (`_RedirectedReLU`), for
    feature visualisation. Built once per (model, layers, redirect) from the
    load-time trace and kept in the model's one cache of derived objects; a
    GraphModule keeps no per-call state, so threads can share it.
    """
    names = tuple(dict.fromkeys(layers))
    for name in names:
        model.layer(name)  # KeyError with the model's name for an unknown layer
    return model.cached(("dreams", names, redirect), lambda: derived(model, None, _edit(model, names, redirect)))


def _stats(model: LoadedModel, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(model.mean, device=like.device).view(1, -1, 1, 1)
    std = torch.tensor(model.std, device=like.device).view(1, -1, 1, 1)
    return mean, std


def _normalise(model: LoadedModel, pixels: torch.Tensor) -> torch.Tensor:
    mean, std = _stats(model, pixels)
    return (pixels - mean) / std


def _forward(model: LoadedModel, graph: fx.GraphModule, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
    x = _normalise(model, pixels.to(model.device)).contiguous(memory_format=torch.channels_last)
    return graph(x)


def _as_array(pixels: torch.Tensor) -> np.ndarray:
    """[1, C, H, W] tensor -> (H, W, C) float32 array in [0, 1]."""
    return np.ascontiguousarray(pixels.detach()[0].clamp(0, 1).permute(1, 2, 0).float().cpu().numpy())


def _previews(steps: int) -> int:
    """Steps between two previews: about 16 per run, so the picture visibly grows without costing much."""
    return max(1, steps // 16)


# ---- feature visualisation: the Lucid recipe -------------------------------------------

# Lucid's colour correlation of ImageNet (the square root of its colour covariance,
# from an SVD): the optimised variables are decorrelated colour channels, and this
# matrix mixes them into RGB, so a step changes natural colour combinations instead of
# one primary at a time. Columns normalised so the largest has norm 1, as Lucid does.
_COLOUR_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
_COLOUR = _COLOUR_SQRT / _COLOUR_SQRT.norm(dim=0).max()


class FourierImage:
    """A picture parameterised by its 2-D Fourier spectrum, scaled by 1/frequency (Lucid's `fft_image`).

    Plain pixels optimised by gradient ascent fill with high-frequency noise: the
    gradient of a deep unit is mostly high-frequency. Natural images have a
    spectrum falling roughly as 1/f; optimising spectrum coefficients that are
    multiplied by 1/f makes a step change low frequencies as easily as high ones,
    which whitens the gradient (Olah et al. 2017, "preconditioning"). The colour
    channels are decorrelated for RGB models (`_COLOUR`); one-channel models (the
    Fashion CNN) get a single grey channel, so the result is a grey picture in the
    model's own pixel space (Lucid's MNIST pictures came out coloured because
    they skipped this). A sigmoid keeps pixels in (0, 1).
    """

    def __init__(self, channels: int, size: int, generator: torch.Generator, sd: float = 0.01) -> None:
        fy = torch.fft.fftfreq(size)[:, None]
        fx_ = torch.fft.rfftfreq(size)[None, :]
        freqs = torch.sqrt(fx_**2 + fy**2)
        self.scale = 1.0 / torch.clamp(freqs, min=1.0 / size)  # 1/f, the DC term capped like Lucid
        self.size, self.channels = size, channels
        spectrum = torch.randn((1, channels, size, size // 2 + 1, 2), generator=generator) * sd
        self.spectrum = spectrum.requires_grad_(True)

    def pixels(self) -> torch.Tensor:
        """[1, C, H, W] in (0, 1)."""
        spectrum = torch.view_as_complex(self.spectrum) * self.scale
        image = torch.fft.irfft2(spectrum, s=(self.size, self.size), norm="ortho") / 4.0  # Lucid's "magic" 4
        if self.channels == 3:
            image = torch.einsum("bchw,dc->bdhw", image, _COLOUR)
        return torch.sigmoid(image)


def _random_view(pixels: torch.Tensor, generator: torch.Generator, pad: int, jitter: int) -> torch.Tensor:
    """Transformation robustness (Olah et al. 2017; Lucid's `standard_transforms`), one `grid_sample`.

    Lucid pads by 12 px with grey, jitters by 8 px, scales by 0.9-1.1, rotates by
    up to 10 degrees and jitters again by 4 px. Here the same happens in one
    resampling that keeps the picture's size (the Fashion CNN's classifier needs
    exactly 28x28): the view is zoomed out by the padding (grey beyond the edge),
    scaled, rotated and shifted by a random whole-pixel amount.
    """
    size = pixels.shape[-1]
    r = torch.rand(4, generator=generator)
    scale = 1 + (torch.floor(r[0] * 11) - 5) / 50  # Lucid: 1 + (i - 5) / 50, i in 0..10
    angle = math.radians(float(torch.floor(r[1] * 21) - 10))  # Lucid: -10..10 degrees
    shift = (torch.floor(r[2:] * (2 * jitter + 1)) - jitter) * 2 / size  # in grid units (2 = the whole picture)
    zoom = (size + 2 * pad) / size / float(scale)
    cos, sin = math.cos(angle) * zoom, math.sin(angle) * zoom
    theta = torch.tensor([[cos, -sin, float(shift[0])], [sin, cos, float(shift[1])]], dtype=pixels.dtype)[None]
    grid = F.affine_grid(theta, list(pixels.shape), align_corners=False)
    return F.grid_sample(pixels - 0.5, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + 0.5


def _fixed_input(model: LoadedModel) -> bool:
    """True when layers after flattening need the exact training size (no adaptive pooling before them)."""
    return not any(row.kind == "avgpool" for row in model.layers)


def default_size(model: LoadedModel) -> int:
    """128 px for ImageNet-size networks (4x fewer pixels than 224: fast on a CPU); the input size for small ones."""
    return min(128, model.input_size)


def default_steps(model: LoadedModel) -> int:
    return 128 if model.input_size > 64 else 256


def _check_unit(model: LoadedModel, layer: str, channel: int) -> tuple[int, ...]:
    shape = model.layer(layer).out_shape
    if not 0 <= int(channel) < shape[0]:
        raise ValueError(f"{layer} has {shape[0]} channels (0..{shape[0] - 1}); got {channel}")
    return shape


def visualise(
    model: LoadedModel,
    layer: str,
    channel: int,
    size: int | None = None,
    steps: int | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    *,
    lr: float = 0.05,
    preview: Preview | None = None,
) -> Dream:
    """The picture that maximises the mean activation of `channel` of `layer` (Olah et al. 2017).

    Any layer of the layer table: for a conv layer the objective is the mean of
    that channel's whole feature map; for a fully connected layer it is the unit;
    for the logits layer, the class score, which makes a class model (Simonyan et
    al. 2014; the logit rather than the softmax, so the picture shows evidence
    FOR the class rather than against the others).

    size: side of the square picture (default `default_size`); networks without
    adaptive pooling need their input size for layers after flattening.
    steps: Adam steps (default `default_steps`), learning rate `lr` as in Lucid.
    history["objective"]: the objective at every step, on that step's random view.
    """
    shape = _check_unit(model, layer, channel)
    size = int(size or default_size(model))
    steps = int(steps or default_steps(model))
    if size < 16 or steps < 1:
        raise ValueError("size must be at least 16 px and steps at least 1")
    if len(shape) != 3 and _fixed_input(model) and size != model.input_size:
        raise ValueError(f"{layer} comes after flattening: {model.name} needs {model.input_size} px pictures for it")
    generator = torch.Generator().manual_seed(seed)
    param = FourierImage(model.channels, size, generator)
    optimiser = torch.optim.Adam([param.spectrum], lr=lr)
    graph = _graph(model, [layer], redirect=True)
    pad, jitter = max(1, round(size * 12 / 128)), max(1, round(size * 8 / 128))
    history: list[float] = []
    start = time.perf_counter()
    for step in range(steps):
        with model.gradient_pass():
            view = _random_view(param.pixels(), generator, pad, jitter)
            out = _forward(model, graph, view)[layer][0, channel]
            objective = out.mean()
            (grad,) = torch.autograd.grad(-objective, [param.spectrum])
        param.spectrum.grad = grad
        optimiser.step()
        history.append(float(objective.detach()))
        if preview is not None and ((step + 1) % _previews(steps) == 0 or step + 1 == steps):
            with torch.no_grad():
                image = _as_array(param.pixels())
            preview(Dream(image, {"objective": list(history)}, step + 1, time.perf_counter() - start))
        if progress is not None:
            progress(step + 1, steps)
    with torch.no_grad():
        image = _as_array(param.pixels())
    return Dream(image, {"objective": history}, steps, time.perf_counter() - start)


def logits_layer(model: LoadedModel) -> str:
    """The last layer: its channels are the class scores."""
    return model.layers[-1].name


def class_model(
    model: LoadedModel,
    target: int,
    steps: int | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    *,
    preview: Preview | None = None,
) -> Dream:
    """A class model: `visualise` of the class logit at the network's own input size."""
    if not 0 <= int(target) < len(model.labels):
        raise ValueError(f"class {target} is not one of {model.name}'s 0..{len(model.labels) - 1}")
    size = model.input_size if _fixed_input(model) else default_size(model)
    return visualise(model, logits_layer(model), int(target), size, steps, seed, progress, preview=preview)


# ---- DeepDream ------------------------------------------------------------------------


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur per channel (reflect padding), for smoothing the gradient."""
    radius = max(1, math.ceil(2 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-(t**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, kernel.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def _pixels_of(model: LoadedModel, image: Image.Image) -> torch.Tensor:
    """The model's input for a PIL picture, back in [0, 1] pixels: [1, C, H, W]."""
    x = model.preprocess(image)
    mean, std = _stats(model, x)
    return (x * std + mean).clamp(0, 1)


def start_picture(model: LoadedModel, image: Image.Image) -> np.ndarray:
    """The (H, W, C) [0, 1] picture DeepDream starts from: what the network sees of `image`."""
    return _as_array(_pixels_of(model, image))


def spatial_layers(model: LoadedModel) -> list[str]:
    """Layers whose output is still a [C, H, W] map: what DeepDream and style transfer can use."""
    return [row.name for row in model.layers if row.spatial]


def default_dream_layer(model: LoadedModel) -> str:
    """The middle activation layer: deep enough for object parts, shallow enough to run fast.

    (VGG-16: relu4_2; the Fashion CNN: relu1_2. The last ones dream whole objects but are slower; the first
    ones only sharpen edges.)
    """
    acts = [row.name for row in model.layers if row.spatial and row.kind in ACTIVATION_KINDS]
    return acts[(len(acts) * 7) // 10 - 1] if len(acts) > 3 else acts[-1]


def deep_dream(
    model: LoadedModel,
    image: Image.Image,
    layer: str,
    octaves: int | None = None,
    steps: int | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    *,
    lr: float | None = None,
    ratio: float = 1.3,
    preview: Preview | None = None,
) -> Dream:
    """Amplify what `layer` already sees in the picture (Mordvintsev et al., 2015).

    Gradient ascent on the mean squared activation of the layer, starting from the
    model's input for `image` (its pixels, at the model's input size). Each step
    shifts the picture by a random offset (so the grid of strided layers does not
    imprint itself), normalises the gradient by its standard deviation (the step
    size is then the same at every layer and octave) and smooths it slightly.
    Octaves: the picture is shrunk by `ratio` octaves-1 times; the dream starts on
    the smallest and the details it adds are carried up to the next size, so
    patterns grow at several scales. Steps are per octave.

    lr: pixel change per step in units of the gradient's std. Default 0.01 for
    ImageNet-size inputs (visible but not saturated after 4 x 10 steps on VGG-16)
    and 0.05 for small ones: measured on the Fashion CNN (relu2_1, 2 x 8 steps), 0.01
    left the layer's energy unchanged (0.9-1.1x) while 0.05 raised it 3-5x; a
    28-pixel picture has few pixels to carry each pattern, so each must move more.
    """
    if not model.layer(layer).spatial:
        raise ValueError(f"DeepDream needs a layer with feature maps; {layer} has shape {model.layer(layer).out_shape}")
    octaves = int(octaves or 4)
    steps = int(steps or 10)
    lr = lr or (0.01 if model.input_size > 64 else 0.05)
    if octaves < 1 or steps < 1:
        raise ValueError("octaves and steps must be at least 1")
    generator = torch.Generator().manual_seed(seed)
    graph = _graph(model, [layer])
    base = _pixels_of(model, image)
    h, w = base.shape[-2:]
    sizes = [(max(8, round(h / ratio**k)), max(8, round(w / ratio**k))) for k in reversed(range(octaves))]
    pyramid = [F.interpolate(base, size=s, mode="bilinear", antialias=True, align_corners=False) for s in sizes]
    detail = torch.zeros_like(pyramid[0])
    history: list[float] = []
    total, done, start = octaves * steps, 0, time.perf_counter()
    picture = pyramid[0]
    for octave_base in pyramid:
        detail = F.interpolate(detail, size=octave_base.shape[-2:], mode="bilinear", align_corners=False)
        picture = (octave_base + detail).clamp(0, 1)
        jitter = max(1, min(picture.shape[-2:]) // 14)
        for _ in range(steps):
            dy, dx = (int(v) for v in torch.randint(-jitter, jitter + 1, (2,), generator=generator))
            with model.gradient_pass():
                leaf = torch.roll(picture, (dy, dx), (2, 3)).requires_grad_(True)
                act = _forward(model, graph, leaf)[layer]
                objective = act.pow(2).mean()
                (grad,) = torch.autograd.grad(objective, [leaf])
            grad = _gaussian_blur(torch.roll(grad, (-dy, -dx), (2, 3)), 0.5)
            picture = (picture + lr * grad / (grad.std() + 1e-8)).clamp(0, 1)
            history.append(float(objective.detach()))
            done += 1
            if preview is not None and (done % _previews(total) == 0 or done == total):
                preview(Dream(_as_array(picture), {"objective": list(history)}, done, time.perf_counter() - start))
            if progress is not None:
                progress(done, total)
        detail = picture - octave_base
    return Dream(_as_array(picture), {"objective": history}, total, time.perf_counter() - start)


# ---- style transfer (Gatys et al. 2016) -------------------------------------------------


def gram(features: torch.Tensor) -> torch.Tensor:
    """Gram matrix of feature maps, normalised by the number of positions: [N, C, C] (or [C, C] for [C, H, W]).

    G[i, j] = sum over positions of F_i * F_j / (H * W): which channels fire
    together, wherever in the picture. Positions are summed away, which is why it
    captures texture and style but not layout (Gatys et al. 2016). Dividing by
    the size makes pictures of different sizes comparable.
    """
    flat = features.flatten(-2)
    return flat @ flat.transpose(-1, -2) / flat.shape[-1]


@dataclass(frozen=True)
class StyleLayers:
    content: str
    style: tuple[str, ...]


def default_style_layers(model: LoadedModel) -> StyleLayers:
    """Gatys et al.'s choice found from the layer table, for any CNN.

    Style: the first activation at each resolution (VGG-16: relu1_1, relu2_1,
    relu3_1, relu4_1, relu5_1). Content: the second activation at the
    second-to-last resolution (VGG-16: relu4_2), deep enough to keep shapes but
    not exact pixels.
    """
    groups: dict[tuple[int, ...], list[str]] = {}
    for row in model.layers:
        if row.spatial and row.kind in ACTIVATION_KINDS:
            groups.setdefault(row.out_shape[1:], []).append(row.name)
    levels = list(groups.values())
    if len(levels) < 2:
        raise ValueError(f"{model.name} has too few resolutions for style transfer")
    content_level = levels[-2]
    return StyleLayers(content_level[min(1, len(content_level) - 1)], tuple(level[0] for level in levels))


def style_unavailable(model: LoadedModel) -> str | None:
    """Why style transfer makes no sense on this model, or None when it does."""
    if model.channels != 3 or model.input_size < 64:
        return (
            f"{model.title} sees {model.input_size}x{model.input_size} grey pictures of single garments. Style "
            "transfer needs features of colour and brush-stroke texture at several scales, learned from varied "
            "photos; this network learned only garment outlines from grey thumbnails, and its feature maps "
            "(28x28 down to 7x7) carry neither, so a painting's style could not be expressed in them (and the "
            "result would be a 28-pixel grey thumbnail)."
        )
    return None


STYLE_DIR = ASSETS / "style"


def wave_pattern(size: int = 256) -> Image.Image:
    """A style image drawn by code: interfering coloured waves (bold colour, strong strokes, no licence)."""
    yy, xx = np.mgrid[0:size, 0:size] / size * 2 * np.pi
    channels = [
        np.sin(6 * xx + 3 * np.sin(2 * yy)),
        np.sin(5 * yy + 3 * np.sin(3 * xx) + 2),
        np.sin(4 * (xx + yy) + 4),
    ]
    rgb = (np.stack(channels, -1) > 0.2) * 0.75 + np.stack(channels, -1) * 0.125 + 0.125
    return Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8), "RGB")


def bundled_styles() -> dict[str, tuple[str, Callable[[], Image.Image]]]:
    """{name: (caption with licence, loader)} of the style images shipped with the app (assets/style/LICENSE.md)."""
    return {
        "udnie": (
            "Francis Picabia, Udnie (1913), public domain",
            lambda: Image.open(STYLE_DIR / "udnie.jpg").convert("RGB"),
        ),
        "waves": ("Coloured waves, drawn by code", wave_pattern),
    }


def _fit(image: Image.Image, side: int, crop: bool) -> Image.Image:
    """Resize so the shorter side is `side` (and centre-crop to a square when `crop`)."""
    scale = side / min(image.size)
    w, h = max(side, round(image.width * scale)), max(side, round(image.height * scale))
    image = image.convert("RGB").resize((w, h), Image.Resampling.BICUBIC)
    if crop:
        left, top = (w - side) // 2, (h - side) // 2
        image = image.crop((left, top, left + side, top + side))
    return image


def _picture_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None].contiguous()


def style_transfer(
    model: LoadedModel,
    content: Image.Image,
    style: Image.Image,
    size: int | None = None,
    steps: int | None = None,
    style_weight: float | None = None,
    content_weight: float | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    *,
    layers: StyleLayers | None = None,
    tv_weight: float = 1.0,
    lr: float = 0.05,
    preview: Preview | None = None,
) -> Dream:
    """Gatys et al.'s style transfer: the content of `content` painted in the style of `style`.

    The picture starts as the content image (square-cropped, `size` px, default
    192) and Adam changes its pixels to lower
        content_weight * content loss + style_weight * style loss + tv_weight * TV,
    Both losses are relative errors, so the weights mean the same on trained and
    untrained networks: content loss = mean squared difference of the content
    layer's features divided by their mean square in the content image; style
    loss = the same for the Gram matrices of each style layer against the style
    image's, averaged over layers. TV (total variation: mean absolute difference
    of neighbouring pixels, times 10) keeps the picture from filling with pixel
    noise. Adam rather than L-BFGS: one gradient per step, so progress, previews
    and cancel come at a steady pace.

    seed has no effect, and this is deliberate: the result is the same for every
    seed. Gatys et al. start from noise, but starting from the content image (as
    here) is what makes a few dozen CPU steps enough, and nothing else in the run
    is random: no random shifts (the picture is compared with fixed targets, not
    searched for a robust pattern, so the views of `visualise` and `deep_dream`
    would only blur it) and no random restarts; Adam and the CPU convolutions are
    deterministic. A seed that selected a noisy start would only give a worse
    picture for the same steps. It stays in the signature so that all the dreams
    share one interface (the issue's), and a caller that passes a seed everywhere
    gets reproducible results here too.
    """
    unavailable = style_unavailable(model)
    if unavailable:
        raise ValueError(unavailable)
    del seed  # no randomness in the run: see the docstring
    size = int(size or 192)
    steps = int(steps or 80)
    style_weight = 10.0 if style_weight is None else float(style_weight)
    content_weight = 1.0 if content_weight is None else float(content_weight)
    if size < 32 or steps < 1 or min(style_weight, content_weight, tv_weight) < 0:
        raise ValueError("size must be at least 32 px, steps at least 1 and the weights not negative")
    layers = layers or default_style_layers(model)
    for name in (layers.content, *layers.style):
        if not model.layer(name).spatial:
            raise ValueError(f"{name} has no feature maps; style transfer needs layers with a [C, H, W] output")
    graph = _graph(model, [layers.content, *layers.style])
    content_pixels = _picture_tensor(_fit(content, size, crop=True))
    style_pixels = _picture_tensor(_fit(style, size, crop=False))
    with model.gradient_pass(), torch.no_grad():
        target_content = _forward(model, graph, content_pixels)[layers.content].detach()
        style_out = _forward(model, graph, style_pixels)
        target_grams = [gram(style_out[name]).detach() for name in layers.style]
    content_scale = target_content.pow(2).mean().clamp(min=1e-12)
    gram_scales = [g.pow(2).mean().clamp(min=1e-12) for g in target_grams]
    picture = content_pixels.clone().requires_grad_(True)
    optimiser = torch.optim.Adam([picture], lr=lr)
    history: dict[str, list[float]] = {"style": [], "content": [], "total": []}
    start = time.perf_counter()
    for step in range(steps):
        with model.gradient_pass():
            out = _forward(model, graph, picture)
            content_loss = (out[layers.content] - target_content).pow(2).mean() / content_scale
            style_loss = sum(
                (gram(out[name]) - g).pow(2).mean() / s
                for name, g, s in zip(layers.style, target_grams, gram_scales, strict=True)
            ) / len(layers.style)
            tv = (picture[..., 1:, :] - picture[..., :-1, :]).abs().mean() + (
                picture[..., 1:] - picture[..., :-1]
            ).abs().mean()
            loss = content_weight * content_loss + style_weight * style_loss + tv_weight * tv
            (grad,) = torch.autograd.grad(loss, [picture])
        picture.grad = grad
        optimiser.step()
        with torch.no_grad():
            picture.clamp_(0, 1)
        for key, value in (("style", style_loss), ("content", content_loss), ("total", loss)):
            history[key].append(float(value.detach()))
        if preview is not None and (step % _previews(steps) == 0 or step + 1 == steps):
            preview(
                Dream(
                    _as_array(picture), {k: list(v) for k, v in history.items()}, step + 1, time.perf_counter() - start
                )
            )
        if progress is not None:
            progress(step + 1, steps)
    return Dream(_as_array(picture), history, steps, time.perf_counter() - start)
