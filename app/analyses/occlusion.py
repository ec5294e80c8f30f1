"""Occlusion experiments (Zeiler & Fergus 2014), fast enough for a classroom.

Slide a grey (or blurred, or mean-coloured) square over the image and record the
network's scores for every position: where hiding the image hurts the score, the
network was looking. Each position is a forward pass, so a naive loop over VGG-16
takes half a minute on a laptop CPU. Three things make it interactive:

- occluded copies run in batches, channels_last, in bf16 where the CPU or GPU does
  bf16 natively (`precision="auto"`);
- incremental inference (Nakandala, Kumar & Papakonstantinou, SIGMOD 2019): an
  occluder changes only the part of each layer's output inside its projective
  field, so for the convolutional layers we reuse the unoccluded activations and
  recompute just that patch, until the patch covers (most of) the feature map;
  from there the rest of the network runs densely. In fp32 this is exact: the
  recomputed patch sees exactly the inputs a full forward pass would. The plan
  follows one path of layers, so networks with branches (residual blocks:
  ResNet, EfficientNet) run whole occluded images instead (`engine="dense"`).
- positions follow captum's `Occlusion` exactly, so `captum_attribution` returns
  what `Occlusion(...).attribute` would, and teachers can cross-check.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn
from torchvision.transforms.v2 import functional as TF

from app.base.numeric import pair, softmax
from app.networks.activations import extractor
from app.networks.loaded import LoadedModel
from app.serving import precision as prec
from app.serving import sharing
from app.serving.progress import Progress

BASELINES = ("zero", "mean", "grey", "blur")
# bf16 pays only on big convolutions: below this many multiply-adds per position (the
# Fashion-MNIST CNN has 5e6) memory traffic and per-layer overhead dominate and the
# casts cost more than they save, so "auto" stays in fp32 (measured in benchmarks.occlusion).
AUTO_BF16_MIN_MACS = 10**8
# Whole occluded images per batch on networks with branches (the dense engine). Measured on
# EfficientNet-Lite0, 169 positions, shared 2-core CPU: batches of 8 / 32 / 169 took 11.9 / 11.3 /
# 13.1 CPU s (synthetic photo) and 7.4 / 9.5 / 11.4 (cat), and peak memory rose from 1.0 to 2.8 GB at
# 169: its depthwise layers are bound by memory traffic, so small batches win. (A MAC-based batch
# as for the chain engine would put all 169 images in one batch.)
DENSE_BATCH = 8
# Run the rest of the network densely once a layer's recomputed patch would cover
# more than this share of its output: gathering patches then costs more than it saves.
DENSE_SHARE = 0.75


@dataclass(frozen=True)
class OcclusionResult:
    """Scores for every occluder position; boxes are (y0, x0, y1, x1), end exclusive, clipped to the image."""

    logits: np.ndarray  # (n_y, n_x, n_classes) float32
    base_logits: np.ndarray  # (n_classes,) float32, the unoccluded image
    boxes: np.ndarray  # (n_y, n_x, 4) int64
    window: tuple[int, int]
    stride: tuple[int, int]
    precision: str = "fp32"  # what actually ran: "fp32" or "bf16"
    engine: str = "incremental"  # "incremental" (chains of layers) or "dense" (whole images: graphs with branches)

    @property
    def grid(self) -> tuple[int, int]:
        return self.logits.shape[0], self.logits.shape[1]


# ---------------------------------------------------------------------------
# Positions (captum's convention)


def axis_starts(size: int, window: int, stride: int) -> np.ndarray:
    """Top-left coordinates along one axis, as captum's `Occlusion` places them.

    captum makes ceil((size - window) / stride) + 1 steps; when (size - window) is not
    a multiple of the stride the last window sticks out and is clipped at the border.
    captum also refuses a stride larger than the window (pixels would be skipped).
    """
    if not 1 <= window <= size:
        raise ValueError(f"window {window} must be between 1 and the image size {size}")
    if stride < 1 or (stride > window and window < size):
        raise ValueError(f"stride {stride} must be between 1 and the window {window}")
    n = math.ceil((size - window) / stride) + 1
    return np.arange(n, dtype=np.int64) * stride


def occluder_boxes(size: tuple[int, int], window: int | Sequence[int], stride: int | Sequence[int]) -> np.ndarray:
    """(n_y, n_x, 4) boxes y0, x0, y1, x1 (end exclusive, clipped) for an image of `size` (H, W)."""
    (wh, ww), (sh, sw) = pair(window), pair(stride)
    ys, xs = axis_starts(size[0], wh, sh), axis_starts(size[1], ww, sw)
    y0, x0 = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([y0, x0, np.minimum(y0 + wh, size[0]), np.minimum(x0 + ww, size[1])], axis=-1)


# ---------------------------------------------------------------------------
# Occluder fills


def make_baseline(model: LoadedModel, x: torch.Tensor, kind: str) -> torch.Tensor:
    """The occluder's fill, [1, C, H, W] in the model's normalised units.

    zero: 0 after normalisation: the training set's mean colour where mean/std are its statistics,
    else whatever the model's constants make 0 (mid-grey for EfficientNet-Lite; see `fill_names`);
    mean: this image's own mean colour; grey: mid-grey (0.5) pixels;
    blur: a strongly blurred copy, which hides detail but keeps colour and layout.
    """
    mean = torch.tensor(model.mean).view(1, -1, 1, 1)
    std = torch.tensor(model.std).view(1, -1, 1, 1)
    x = x.detach().float().cpu()
    if kind == "zero":
        return torch.zeros_like(x)
    if kind == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x).clone()
    if kind == "grey":
        return ((0.5 - mean) / std).expand_as(x).clone()
    if kind == "blur":
        sigma = max(x.shape[-2:]) / 16
        size = min(2 * math.ceil(2.5 * sigma) + 1, 2 * ((min(x.shape[-2:]) - 1) // 2) + 1)
        return TF.gaussian_blur(x, [size, size], [sigma, sigma])
    raise ValueError(f"unknown occluder fill {kind!r}; choose from {BASELINES}")


def _baseline_tensor(model: LoadedModel, x: torch.Tensor, baseline: float | str | torch.Tensor) -> torch.Tensor:
    if isinstance(baseline, str):
        return make_baseline(model, x, baseline)
    if isinstance(baseline, torch.Tensor):
        return baseline.detach().float().cpu().reshape(1, *baseline.shape[-3:]).expand_as(x).clone()
    return torch.full_like(x, float(baseline))


# ---------------------------------------------------------------------------
# The network as a chain of steps, split into a spatially local head and the rest


@dataclass(frozen=True)
class _Stage:
    """A conv or max-pool (applied to an unpadded window) plus the pointwise layers after it."""

    window_op: Callable[[torch.Tensor], torch.Tensor]
    pointwise: tuple[Callable[[torch.Tensor], torch.Tensor], ...]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    pad_value: float
    macs_per_output: int  # multiply-adds per output pixel (all channels)
    first_step: int  # index in the chain where this stage starts (for the dense switch)


@dataclass(frozen=True)
class _Chain:
    steps: tuple[Callable[[torch.Tensor], torch.Tensor], ...]
    paths: tuple[str | None, ...]  # module path of each step (None for functions such as flatten)
    stages: tuple[_Stage, ...]  # the local head; stage i+1 starts where stage i's pointwise layers end


_POINTWISE = (nn.BatchNorm2d, nn.ReLU, nn.Dropout, nn.Identity, nn.LeakyReLU, nn.GELU, nn.SiLU)


def _local_stage(module: nn.Module, index: int) -> _Stage | None:
    if isinstance(module, nn.Conv2d) and module.padding_mode == "zeros" and not isinstance(module.padding, str):
        k, s, p, d = (pair(v) for v in (module.kernel_size, module.stride, module.padding, module.dilation))
        op = partial(F.conv2d, weight=module.weight, bias=module.bias, stride=s, dilation=d, groups=module.groups)
        keff = (d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1)
        macs = module.out_channels * module.in_channels // module.groups * k[0] * k[1]
        return _Stage(op, (), keff, s, p, 0.0, macs, index)
    if isinstance(module, nn.MaxPool2d) and not module.ceil_mode and pair(module.dilation) == (1, 1):
        k = pair(module.kernel_size)
        s = pair(module.stride if module.stride is not None else module.kernel_size)
        op = partial(F.max_pool2d, kernel_size=k, stride=s)
        return _Stage(op, (), k, s, pair(module.padding), -math.inf, 0, index)
    return None


def _chain(model: LoadedModel) -> _Chain | None:
    """The network as a list of steps, built once; None for a graph with branches (residual blocks).

    Walks the graph traced at model load (app.networks.activations.extractor) instead of tracing
    again: tracing patches nn.Module.__call__ process-wide and would disturb other sessions.
    """
    return model.cached("occlusion_chain", lambda: _chain_or_none(model))


def _chain_or_none(model: LoadedModel) -> _Chain | None:
    try:
        return _walk(extractor(model))
    except ValueError:
        return None


def _walk(gm: fx.GraphModule) -> _Chain:
    steps: list[Callable[[torch.Tensor], torch.Tensor]] = []
    modules: list[nn.Module | None] = []
    prev = None
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            prev = node
            continue
        if node.op == "output":
            break
        rest = list(node.args[1:]) + list(node.kwargs.values())
        if not node.args or node.args[0] is not prev or any(isinstance(a, fx.Node) for a in rest):
            raise ValueError("occlusion_map needs a network that runs as a chain of layers")
        if node.op == "call_module":
            modules.append(gm.get_submodule(node.target))
            steps.append(modules[-1])
        else:
            apply = _apply if node.op == "call_function" else _apply_method
            steps.append(partial(apply, node.target, tuple(node.args[1:]), dict(node.kwargs)))
            modules.append(None)
        prev = node
    paths = tuple(n.target if n.op == "call_module" else None for n in gm.graph.nodes if n.op.startswith("call_"))
    return _Chain(tuple(steps), paths, _stages(modules))


def _apply(fn: Callable, args: tuple, kwargs: dict, h: torch.Tensor) -> torch.Tensor:
    return fn(h, *args, **kwargs)


def _apply_method(name: str, args: tuple, kwargs: dict, h: torch.Tensor) -> torch.Tensor:
    return getattr(h, name)(*args, **kwargs)


def _stages(modules: list[nn.Module | None]) -> tuple[_Stage, ...]:
    stages: list[_Stage] = []
    for i, m in enumerate(modules):
        stage = _local_stage(m, i) if m is not None else None
        if stage is not None:
            stages.append(stage)
        elif isinstance(m, nn.BatchNorm2d) and stages and _foldable(stages[-1], m):
            stages[-1] = _Stage(**{**stages[-1].__dict__, "window_op": _fold(stages[-1].window_op, m)})
        elif isinstance(m, _POINTWISE) and stages:
            last = stages[-1]
            stages[-1] = _Stage(**{**last.__dict__, "pointwise": (*last.pointwise, m)})
        else:
            break
    return tuple(stages)


def _foldable(stage: _Stage, bn: nn.BatchNorm2d) -> bool:
    op = stage.window_op
    return not stage.pointwise and getattr(op, "func", None) is F.conv2d and bn.running_var is not None


@torch.no_grad()
def _fold(conv: partial, bn: nn.BatchNorm2d) -> partial:
    """Eval-mode batch norm folded into the conv before it: one pass over the patch instead of two."""
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    weight, bias = conv.keywords["weight"], conv.keywords["bias"]
    shift = -bn.running_mean if bias is None else bias - bn.running_mean
    shift = shift * scale + (bn.bias if bn.bias is not None else 0)
    folded = (weight * scale.view(-1, 1, 1, 1)).contiguous(memory_format=torch.channels_last)
    return partial(F.conv2d, **{**conv.keywords, "weight": folded, "bias": shift.detach()})


# ---------------------------------------------------------------------------
# The incremental plan: which patch of each stage's output every position changes


@dataclass(frozen=True)
class _AxisPlan:
    """Per axis and per level (0 = input, i = output of stage i-1): patch size and each position's patch origin."""

    size: list[int]  # map size per level
    patch: list[int]  # patch size per level (same for every position)
    origin: list[np.ndarray]  # (n_positions_on_axis,) patch origin per level


def _axis_plan(stages: Sequence[_Stage], axis: int, size: int, starts: np.ndarray, window: int) -> _AxisPlan:
    a, b = starts.copy(), np.minimum(starts + window, size)
    sizes, patches, origins = [size], [window], [np.minimum(starts, size - window)]
    for st in stages:
        k, s, p = st.kernel[axis], st.stride[axis], st.padding[axis]
        size = (size + 2 * p - k) // s + 1
        # output i reads inputs [i*s - p, i*s - p + k): it changes iff that range meets [a, b)
        a = np.maximum(0, (a + p - k) // s + 1)
        b = np.minimum(size, -(-(b + p) // s))
        patch = int((b - a).max())
        sizes.append(size)
        patches.append(patch)
        origins.append(np.minimum(a, size - patch))
    return _AxisPlan(sizes, patches, origins)


def _dense_from(stages: Sequence[_Stage], py: _AxisPlan, px: _AxisPlan, share: float) -> int:
    """Index of the first stage computed densely (len(stages) = all stages incremental)."""
    for i in range(len(stages)):
        if py.patch[i + 1] * px.patch[i + 1] > share * py.size[i + 1] * px.size[i + 1]:
            return i
    return len(stages)


def _gather(source: torch.Tensor, oy: list[int], ox: list[int], h: int, w: int) -> torch.Tensor:
    """[B, h, w, C] copies of the windows of an [H, W, C] map at per-sample origins (oy, ox)."""
    return torch.stack([source[y : y + h, x : x + w] for y, x in zip(oy, ox, strict=True)])


def _paste(window: torch.Tensor, wy: list[int], wx: list[int], patch: torch.Tensor, py: list[int], px: list[int]):
    """Overwrite [B, h, w, C] windows (origins wy, wx) in place with [B, ph, pw, C] patches (origins py, px).

    Both origins are in the same map's coordinates; the parts of a patch outside its window are dropped.
    """
    h, w = window.shape[1:3]
    ph, pw = patch.shape[1:3]
    for i, (y, x, y0, x0) in enumerate(zip(wy, wx, py, px, strict=True)):
        top, left = max(y0, y), max(x0, x)
        bottom, right = min(y0 + ph, y + h), min(x0 + pw, x + w)
        if bottom > top and right > left:
            source = patch[i, top - y0 : bottom - y0, left - x0 : right - x0]
            window[i, top - y : bottom - y, left - x : right - x] = source


def _nchw(t: torch.Tensor) -> torch.Tensor:
    return t.permute(0, 3, 1, 2)  # a channels_last NCHW view of an NHWC tensor


def _nhwc(t: torch.Tensor) -> torch.Tensor:
    return t.permute(0, 2, 3, 1)


def _run(steps: Sequence[Callable[[torch.Tensor], torch.Tensor]], h: torch.Tensor) -> torch.Tensor:
    for step in steps:
        h = step(h)
    return h


class _Incremental:
    """Scores of occluded copies, recomputing only what each occluder changes."""

    engine = "incremental"

    def __init__(self, chain: _Chain, x: torch.Tensor, fill: torch.Tensor, boxes: np.ndarray, window, share, device):
        self.chain = chain
        stages = chain.stages
        size = x.shape[-2:]
        self.py = _axis_plan(stages, 0, size[0], boxes[:, 0, 0], window[0])
        self.px = _axis_plan(stages, 1, size[1], boxes[0, :, 1], window[1])
        self.dense_from = _dense_from(stages, self.py, self.px, share)
        if self.dense_from < len(stages):
            self.dense_step = stages[self.dense_from].first_step
        else:
            self.dense_step = stages[-1].first_step + 1 + len(stages[-1].pointwise) if stages else 0
        self.boxes = boxes
        self.x_hwc = x[0].permute(1, 2, 0).contiguous().to(device)
        self.fill_hwc = fill[0].permute(1, 2, 0).contiguous().to(device)
        self.caches: list[torch.Tensor] = []  # padded input of each incremental stage, [Hp, Wp, C]
        self.dense_input = self.x_hwc  # input of the first dense step, [H, W, C]

    def base(self) -> torch.Tensor:
        """Unoccluded forward pass; keeps every incremental stage's (padded) input."""
        h = _nchw(self.x_hwc.unsqueeze(0)).contiguous(memory_format=torch.channels_last)
        starts = {st.first_step: st for st in self.chain.stages[: self.dense_from]}
        for i, step in enumerate(self.chain.steps):
            if i in starts:
                p = starts[i].padding
                self.caches.append(_nhwc(F.pad(h, (p[1], p[1], p[0], p[0]), value=starts[i].pad_value))[0])
            if i == self.dense_step:
                self.dense_input = _nhwc(h)[0]
            h = step(h)
            h = h.contiguous(memory_format=torch.channels_last) if h.dim() == 4 else h
        return h.float()

    def batch(self, iy: np.ndarray, ix: np.ndarray) -> torch.Tensor:
        """Logits [B, classes] for the positions (iy[k], ix[k])."""
        py, px = self.py, self.px
        oy, ox = py.origin[0][iy].tolist(), px.origin[0][ix].tolist()
        patch = _gather(self.x_hwc, oy, ox, py.patch[0], px.patch[0])
        box = self.boxes[iy, ix]
        fills = [self.fill_hwc[y0:y1, x0:x1] for y0, x0, y1, x1 in box.tolist()]
        for i, (y, x, (y0, x0, _, _)) in enumerate(zip(oy, ox, box.tolist(), strict=True)):
            patch[i, y0 - y : y0 - y + fills[i].shape[0], x0 - x : x0 - x + fills[i].shape[1]] = fills[i]
        for level, st in enumerate(self.chain.stages[: self.dense_from]):
            # the output patch at origin o reads the padded inputs [o*s, o*s + (P-1)*s + k)
            ny, nx = py.origin[level + 1][iy], px.origin[level + 1][ix]
            wy, wx = (ny * st.stride[0]).tolist(), (nx * st.stride[1]).tolist()
            hh = (py.patch[level + 1] - 1) * st.stride[0] + st.kernel[0]
            ww = (px.patch[level + 1] - 1) * st.stride[1] + st.kernel[1]
            window = _gather(self.caches[level], wy, wx, hh, ww)
            _paste(window, wy, wx, patch, [y + st.padding[0] for y in oy], [x + st.padding[1] for x in ox])
            out = st.window_op(_nchw(window))
            for layer in st.pointwise:
                out = layer(out)
            patch, oy, ox = _nhwc(out), ny.tolist(), nx.tolist()
        full = self.dense_input.expand(len(iy), *self.dense_input.shape).clone()
        _paste(full, [0] * len(iy), [0] * len(iy), patch, oy, ox)
        return _run(self.chain.steps[self.dense_step :], _nchw(full)).float()

    def macs_per_position(self, model: LoadedModel) -> int:
        """Multiply-adds per occluder position: the recomputed patches plus the dense rest (for time estimates)."""
        head = sum(
            st.macs_per_output * self.py.patch[i + 1] * self.px.patch[i + 1]
            for i, st in enumerate(self.chain.stages[: self.dense_from])
        )
        shapes = {row.path: row.out_shape for row in model.layers}
        rest = zip(self.chain.steps[self.dense_step :], self.chain.paths[self.dense_step :], strict=True)
        return head + sum(_macs(step, shapes.get(path, ())) for step, path in rest)


class _Dense:
    """Scores of occluded copies as whole images through the network.

    For graphs that are not a chain (residual additions): the incremental plan follows
    one path of layers, so with branches every occluded copy runs in full, in batches.
    """

    engine = "dense"

    def __init__(self, model: LoadedModel, x: torch.Tensor, fill: torch.Tensor, boxes: np.ndarray, device):
        self.module = model.module
        self.boxes = boxes
        self.x = x.to(device)
        self.fill = fill.to(device)
        self.macs = network_macs(model)

    def base(self) -> torch.Tensor:
        return self.module(self.x.contiguous(memory_format=torch.channels_last)).float()

    def batch(self, iy: np.ndarray, ix: np.ndarray) -> torch.Tensor:
        images = self.x.expand(len(iy), -1, -1, -1).clone()
        for i, (y0, x0, y1, x1) in enumerate(self.boxes[iy, ix].tolist()):
            images[i, :, y0:y1, x0:x1] = self.fill[0, :, y0:y1, x0:x1]
        return self.module(images.contiguous(memory_format=torch.channels_last)).float()

    def macs_per_position(self, model: LoadedModel) -> int:
        return self.macs


def _engine(
    model: LoadedModel, x: torch.Tensor, fill: torch.Tensor, boxes: np.ndarray, window, incremental: bool
) -> _Incremental | _Dense:
    """The incremental engine where the network is a chain, else whole images."""
    chain = _chain(model)
    if chain is None:
        return _Dense(model, x, fill, boxes, model.device)
    return _Incremental(chain, x, fill, boxes, window, DENSE_SHARE if incremental else -1.0, model.device)


def engine_name(model: LoadedModel) -> str:
    """ "incremental" when occlusion can reuse unoccluded activations for this network, else "dense"."""
    return "dense" if _chain(model) is None else "incremental"


def _macs(step: Callable, out_shape: tuple[int, ...]) -> int:
    if isinstance(step, nn.Conv2d):
        return math.prod(out_shape) * step.in_channels // step.groups * math.prod(pair(step.kernel_size))
    if isinstance(step, nn.Linear):
        return step.in_features * step.out_features
    return 0


def network_macs(model: LoadedModel) -> int:
    """Multiply-adds of one whole image through the network (its convolutions and linear layers, each
    module once): the unit of work by which bf16 and batch sizes are chosen, and times estimated."""
    rows = {row.path: row for row in model.layers if row.kind in ("conv", "fc")}
    return sum(_macs(model.module.get_submodule(path), row.out_shape) for path, row in rows.items())


def fill_names(model: LoadedModel) -> dict[str, str]:
    """What each of BASELINES is for this model, in words: the same fill means different pixels per model.

    "zero" is the data set's mean colour only where the normalisation uses its statistics; for a model
    with fixed constants (EfficientNet-Lite: (p - 127) / 128) it is a grey, nearly the "grey" fill.
    """
    colour = "grey" if model.channels == 1 else "colour"
    grey_zero = len(set(model.mean)) == 1
    if model.norm_data:
        zero = f"{model.norm_data} mean {colour}"
    elif grey_zero:
        zero = f"grey {model.mean[0] * 255:.0f}/255 (the network's 0)"
    else:
        zero = "the network's 0 (" + ", ".join(f"{m * 255:.0f}" for m in model.mean) + " of 255)"
    near_grey = max(abs(m - 0.5) for m in model.mean) < 1 / 255
    return {
        "zero": zero,
        "mean": f"this image's mean {colour}",
        "grey": "mid-grey (0.5)" + (", about the same as the network's 0" if near_grey else ""),
        "blur": "blurred copy of the image",
    }


def engine_words(engine: str, title: str) -> str:
    """How the occluded copies were (or will be) computed, for the page to state once and truly."""
    if engine == "dense":
        return (
            f"{title} has branches (residual connections), so every occluded copy runs whole through the "
            "network; on a plain chain of layers such as VGG-16 only the part of each layer the square changes "
            "is recomputed."
        )
    return (
        f"{title} is a plain chain of layers, so only the part of each layer that the square changes is "
        "recomputed, several times faster than running every copy whole."
    )


# ---------------------------------------------------------------------------
# Public entry points

# multiply-adds per second measured on the latest run, per (model, precision): for time estimates
_SPEED: dict[tuple[str, str], float] = {}


def _default_batch(macs_per_position: int) -> int:
    """About 200 GMAC per batch (64 VGG-16 positions): amortises the fc weights and the per-batch overhead."""
    return int(np.clip(2 ** round(math.log2(max(2e11 / max(macs_per_position, 1), 1))), 16, 512))


def occlusion_map(
    model: LoadedModel,
    x: torch.Tensor,
    window: int | Sequence[int],
    stride: int | Sequence[int],
    baseline: float | str | torch.Tensor = 0.0,
    precision: str = "auto",
    progress: Progress | None = None,
    *,
    incremental: bool = True,
    batch_size: int | None = None,
) -> OcclusionResult:
    """Logits for the image with a `window` square hidden at every `stride` step.

    baseline: the occluder's fill, a value after normalisation, a [1, C, H, W] tensor,
    or one of BASELINES ("zero", "mean", "grey", "blur"; see `make_baseline`).
    precision: "auto" (bf16 where the hardware runs it natively and the network is big enough
    to profit, else fp32), "exact"/"fp32" or "bf16". The result's `precision` says which ran.
    incremental=False recomputes whole images (the plain method, for comparison).
    progress(done, total) is called after every batch.
    """
    x = x.detach().float().cpu()
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"x must be one image [1, C, H, W], got {tuple(x.shape)}")
    window_hw, stride_hw = pair(window), pair(stride)
    boxes = occluder_boxes(tuple(x.shape[-2:]), window_hw, stride_hw)
    fill = _baseline_tensor(model, x, baseline)
    engine = _engine(model, x, fill, boxes, window_hw, incremental)
    resolved = _resolve(precision, model, engine)
    n_y, n_x = boxes.shape[:2]
    iy, ix = (a.ravel() for a in np.meshgrid(np.arange(n_y), np.arange(n_x), indexing="ij"))
    chunks = []
    # no_grad rather than inference_mode: autocast caches its bf16 copies of the weights
    # across batches only outside inference mode (VGG's fc layers would be re-cast every batch)
    with torch.no_grad(), prec.autocast(model.device, resolved):
        with sharing.forward():
            base = engine.base()[0]
        default = DENSE_BATCH if engine.engine == "dense" else _default_batch(engine.macs_per_position(model))
        batch = batch_size or default
        start = time.perf_counter()
        for first in range(0, len(iy), batch):
            with sharing.forward():  # per batch, so a trace waiting to start (a model loading) waits one batch
                chunks.append(engine.batch(iy[first : first + batch], ix[first : first + batch]).cpu())
            if progress is not None:
                progress(min(first + batch, len(iy)), len(iy))
        elapsed = time.perf_counter() - start
    _SPEED[(model.name, resolved)] = engine.macs_per_position(model) * len(iy) / max(elapsed, 1e-6)
    logits = torch.cat(chunks).reshape(n_y, n_x, -1)
    return OcclusionResult(
        logits.numpy(),
        base.cpu().numpy(),
        boxes,
        window_hw,
        stride_hw,
        resolved,
        engine.engine,
    )


def _resolve(precision: str, model: LoadedModel, engine: _Incremental | _Dense) -> str:
    resolved = prec.resolve(precision, model.device)
    if precision == "auto" and engine.macs_per_position(model) < AUTO_BF16_MIN_MACS:
        return "fp32"
    if precision == "auto":  # the model may keep its bulk analyses in fp32 (see app.networks.models.BULK_PRECISION)
        return prec.resolve(model.precision, model.device)
    return resolved


def estimate_seconds(
    model: LoadedModel, window: int | Sequence[int], stride: int | Sequence[int], precision: str = "auto"
) -> float:
    """Expected run time of `occlusion_map` on a model-sized input, so a page can warn before a long run.

    Work is counted in multiply-adds per position (patches + dense rest) and divided by
    the speed of the latest run with this model and precision; before any run, by the
    speed of a plain batched forward pass (timed once). Roughly ±50 %: other sessions
    share the CPU.
    """
    size = (model.input_size, model.input_size)
    x = torch.zeros(1, model.channels, *size)
    window_hw = pair(window)
    engine = _engine(model, x, x, occluder_boxes(size, window_hw, stride), window_hw, True)
    n_positions = math.prod(engine.boxes.shape[:2])
    resolved = _resolve(precision, model, engine)
    key = (model.name, resolved)
    if key not in _SPEED:
        dense = _engine(model, x, x, engine.boxes[:1, :1], window_hw, False)
        macs = dense.macs_per_position(model)
        n = int(np.clip(round(2e9 / max(macs, 1)), 1, 256))  # a batch worth timing: ~2 GMAC
        batch = x.expand(n, -1, -1, -1).to(model.device, memory_format=torch.channels_last)
        with torch.no_grad(), prec.autocast(model.device, resolved), sharing.forward():
            model.module(batch)  # warm-up
            start = time.perf_counter()
            model.module(batch).cpu()
            _SPEED[key] = n * macs / max(time.perf_counter() - start, 1e-6)
    return n_positions * engine.macs_per_position(model) / _SPEED[key]


# ---------------------------------------------------------------------------
# What to show: maps derived from the scores


def probabilities(result: OcclusionResult) -> np.ndarray:
    """Softmax of every position's logits, (n_y, n_x, n_classes)."""
    return softmax(result.logits)


def base_probabilities(result: OcclusionResult) -> np.ndarray:
    """Softmax of the unoccluded image's logits, (n_classes,)."""
    return softmax(result.base_logits)


def target_prob_map(result: OcclusionResult, target: int) -> np.ndarray:
    """The target class's probability with the occluder at each position (the Zeiler & Fergus map)."""
    return probabilities(result)[..., target]


def prob_drop_map(result: OcclusionResult, target: int) -> np.ndarray:
    """How much hiding each region lowers the target probability (negative: hiding it helps)."""
    return base_probabilities(result)[target] - target_prob_map(result, target)


def predicted_class_map(result: OcclusionResult) -> np.ndarray:
    """The class the network predicts with the occluder at each position, (n_y, n_x) int."""
    return result.logits.argmax(axis=-1)


def top_k_map(result: OcclusionResult, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(class indices, probabilities), each (n_y, n_x, k), best first: the hover text of each cell."""
    probs = probabilities(result)
    idx = np.argsort(-probs, axis=-1, kind="stable")[..., :k]
    return idx, np.take_along_axis(probs, idx, axis=-1)


def pixel_map(result: OcclusionResult, values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Spread a per-position map onto pixels: each pixel gets the mean over the windows that cover it."""
    total = np.zeros(shape, dtype=np.float64)
    count = np.zeros(shape, dtype=np.int64)
    for (y0, x0, y1, x1), v in zip(result.boxes.reshape(-1, 4), values.reshape(-1), strict=True):
        total[y0:y1, x0:x1] += v
        count[y0:y1, x0:x1] += 1
    return (total / np.maximum(count, 1)).astype(np.float32)


def captum_attribution(result: OcclusionResult, target: int, shape: tuple[int, int]) -> np.ndarray:
    """What captum's `Occlusion(...).attribute` returns (per pixel, any channel): mean over the
    windows covering a pixel of the target logit's drop, unoccluded minus occluded."""
    return pixel_map(result, result.base_logits[target] - result.logits[..., target], shape)


def occluded_image(
    model: LoadedModel, x: torch.Tensor, result: OcclusionResult, iy: int, ix: int, baseline: float | str | torch.Tensor
) -> np.ndarray:
    """The input as the network saw it with the occluder at cell (iy, ix): (H, W, 3) uint8 RGB."""
    x = x.detach().float().cpu()
    fill = _baseline_tensor(model, x, baseline)
    y0, x0, y1, x1 = (int(v) for v in result.boxes[iy, ix])
    occluded = x.clone()
    occluded[..., y0:y1, x0:x1] = fill[..., y0:y1, x0:x1]
    pixels = model.denormalise(occluded).permute(1, 2, 0).numpy()
    if pixels.shape[-1] == 1:
        pixels = np.repeat(pixels, 3, axis=-1)
    return (pixels * 255).round().astype(np.uint8)
