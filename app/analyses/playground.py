"""The layer playground: each CNN layer type applied by hand to a picture or an 8x8 crop.

The lessons list the layer types (convolution, ReLU, pooling, fully connected,
softmax, normalisation); this module runs each one on small NumPy arrays with the
same PyTorch functional ops the networks use (`F.conv2d`, `F.max_pool2d`, ...), so
the numbers a student reads off the page are exactly what a layer would compute.
Inputs and outputs are plain float arrays ([H, W] maps, [C, H, W] stacks) so a
notebook can call everything directly.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from app.networks.activations import activations
from app.networks.loaded import LoadedModel

PoolKind = Literal["max", "avg"]

# 3x3 kernels as the lessons name them. F.conv2d computes a cross-correlation (the
# kernel is not flipped), so "Sobel x" as written is positive where brightness
# increases to the right and "Sobel y" where it increases downwards.
KERNELS: dict[str, tuple[tuple[float, float, float], ...]] = {
    "identity": ((0, 0, 0), (0, 1, 0), (0, 0, 0)),
    "edge (high-pass)": ((-1, -1, -1), (-1, 8, -1), (-1, -1, -1)),
    "Sobel x": ((-1, 0, 1), (-2, 0, 2), (-1, 0, 1)),
    "Sobel y": ((-1, -2, -1), (0, 0, 0), (1, 2, 1)),
    "blur": ((1 / 16, 2 / 16, 1 / 16), (2 / 16, 4 / 16, 2 / 16), (1 / 16, 2 / 16, 1 / 16)),
    "sharpen": ((0, -1, 0), (-1, 5, -1), (0, -1, 0)),
    "emboss": ((-2, -1, 0), (-1, 1, 1), (0, 1, 2)),
}


def _t(x: np.ndarray) -> torch.Tensor:
    """[H, W] or [C, H, W] array → float32 [1, C, H, W] tensor."""
    t = torch.tensor(np.asarray(x, dtype=np.float32))
    return t.reshape(1, -1, *t.shape[-2:])


def grey_array(img: Image.Image, max_side: int = 128, min_side: int = 8) -> np.ndarray:
    """The picture as 0-255 grey values [H, W], shrunk so the longest side is at most max_side.

    A full-size photo would make every map too large to read and slow to redraw;
    128 px keeps edges visible while staying instant. A picture thinner than min_side
    is enlarged (nearest neighbour) so an 8x8 crop and a 3x3 kernel always fit.
    """
    grey = img.convert("L")
    if max(grey.size) > max_side:
        grey = grey.copy()
        grey.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    if min(grey.size) < min_side:
        scale = min_side / min(grey.size)
        grey = grey.resize((round(grey.width * scale), round(grey.height * scale)), Image.Resampling.NEAREST)
    return np.asarray(grey, dtype=np.float32)


def crop(x: np.ndarray, top: int, left: int, size: int = 8) -> np.ndarray:
    """A size x size window of a map, clamped so it stays inside the map."""
    top = int(np.clip(top, 0, max(0, x.shape[0] - size)))
    left = int(np.clip(left, 0, max(0, x.shape[1] - size)))
    return x[top : top + size, left : left + size].copy()


def convolve(x: np.ndarray, kernel: np.ndarray | list[list[float]], padding: int = 0, stride: int = 1) -> np.ndarray:
    """One 3x3 (or any odd k x k) filter over a grey map [H, W] with F.conv2d: the feature map.

    padding=0 ("valid") shrinks the map by k-1; padding=(k-1)//2 with zeros keeps its size.
    """
    k = torch.tensor(np.asarray(kernel, dtype=np.float32)).reshape(1, 1, *np.shape(kernel))
    return F.conv2d(_t(x), k, padding=padding, stride=stride)[0, 0].numpy()


def feature_stack(x: np.ndarray, kernels: dict[str, tuple] | None = None, padding: int = 1) -> np.ndarray:
    """Every kernel applied at once (one conv layer with len(kernels) output channels), then ReLU.

    Returns [C, H, W] in the order of `kernels` (default: all presets), the kind of
    stack a real conv layer hands to the next layer.
    """
    kernels = KERNELS if kernels is None else kernels
    weight = torch.tensor([list(map(list, k)) for k in kernels.values()], dtype=torch.float32).unsqueeze(1)
    return F.relu(F.conv2d(_t(x), weight, padding=padding))[0].numpy()


def relu(x: np.ndarray) -> np.ndarray:
    """max(0, x) elementwise: negative responses become 0, positive ones pass unchanged."""
    return F.relu(torch.tensor(np.asarray(x, dtype=np.float32))).numpy()


def pool(x: np.ndarray, kind: PoolKind, window: int = 2, stride: int = 2) -> np.ndarray:
    """Max or average pooling of a map [H, W] (no padding; windows that would overhang are dropped)."""
    fn = F.max_pool2d if kind == "max" else F.avg_pool2d
    return fn(_t(x), window, stride)[0, 0].numpy()


def pool_coverage(shape: tuple[int, int], window: int, stride: int) -> np.ndarray:
    """How many pooling windows read each input pixel: 0 = skipped (stride > window), >1 = overlap.

    F.unfold cuts the windows out of an all-ones map and F.fold adds them back, so
    the count uses exactly the window positions the pooling op uses.
    """
    ones = torch.ones(1, 1, *shape)
    cols = F.unfold(ones, window, stride=stride)
    return F.fold(cols, shape, window, stride=stride)[0, 0].numpy()


def global_average_pool(stack: np.ndarray) -> np.ndarray:
    """[C, H, W] → [C]: each map replaced by its mean, one number per channel."""
    return F.adaptive_avg_pool2d(_t(stack), 1).flatten().numpy()


def pool_backward(x: np.ndarray, kind: PoolKind, window: int, stride: int, cell: tuple[int, int]) -> np.ndarray:
    """d(output[cell]) / d(input) for each input pixel, by autograd through the pooling op.

    Max pooling sends the whole gradient to the window's winning pixel (ties: the first
    in reading order, as PyTorch picks it); average pooling gives each of the window's
    N·N pixels 1/(N·N).
    """
    inp = _t(x).requires_grad_(True)
    fn = F.max_pool2d if kind == "max" else F.avg_pool2d
    out = fn(inp, window, stride)
    out[0, 0, cell[0], cell[1]].backward()
    return inp.grad[0, 0].numpy()


def window_values(x: np.ndarray, window: int, stride: int) -> np.ndarray:
    """[out_H, out_W, window·window]: the values each pooling window reads (F.unfold, the op's own positions)."""
    cols = F.unfold(_t(x), window, stride=stride)[0]  # [window·window, out_H·out_W]
    out_h = (x.shape[0] - window) // stride + 1
    return cols.T.reshape(out_h, -1, window * window).numpy()


def teaching_cell(x: np.ndarray, kind: PoolKind, window: int, stride: int) -> tuple[int, int]:
    """The output cell whose backward pass shows the rule best, for the page's default.

    Max pooling: the window whose winner beats its runner-up by the most, so the gradient
    visibly goes to one clear value (in an all-zero region it goes to an arbitrary tie);
    among equal margins, the largest winner.
    Average pooling: the window with the largest sum, so the shared gradient sits on real
    values. Ties: the cell nearest the centre of the map.
    """
    values = window_values(x, window, stride)
    top = np.sort(values, axis=-1)
    if kind == "max":  # the clearest winner first; where every window ties, at least a non-zero one
        keys = (top[..., -1] - (top[..., -2] if window > 1 else 0.0), top[..., -1])
    else:
        keys = (values.sum(axis=-1),)
    rows, cols = np.indices(top.shape[:2])
    distance = (rows - (rows.shape[0] - 1) / 2) ** 2 + (cols - (rows.shape[1] - 1) / 2) ** 2
    best = np.lexsort((distance.ravel(), *(-k.ravel() for k in reversed(keys))))[0]
    return int(rows.ravel()[best]), int(cols.ravel()[best])


def tie_count(x: np.ndarray, window: int, stride: int, cell: tuple[int, int]) -> int:
    """How many values of the cell's window share its maximum (more than 1: max pooling's choice is arbitrary)."""
    values = window_values(x, window, stride)[cell]
    return int((values == values.max()).sum())


def fully_connected(features: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Scores = W · features + b (F.linear): each output is a weighted sum of every input."""
    return F.linear(
        torch.as_tensor(features, dtype=torch.float32),
        torch.as_tensor(weight, dtype=torch.float32),
        torch.as_tensor(bias, dtype=torch.float32),
    ).numpy()


def last_layer(model: LoadedModel, x: torch.Tensor) -> dict[str, np.ndarray]:
    """The network's final fully connected layer on input x, taken apart.

    Returns features (what enters the layer, [D]), weight [K, D], bias [K] and
    logits [K] recomputed here with F.linear from those three, so the page can show
    that the scores really are weighted sums. Weights are copied under the model lock;
    the shared module is only read.
    """
    last = model.layers[-1]
    if last.kind != "fc":
        raise ValueError(f"{model.name} does not end in a fully connected layer")
    previous = model.layers[-2].name
    features = activations(model, x)[previous][0].flatten().numpy()
    with model.lock:
        fc = model.module.get_submodule(last.path)
        weight = fc.weight.detach().float().cpu().numpy().copy()
        bias = fc.bias.detach().float().cpu().numpy().copy()
    return {"features": features, "weight": weight, "bias": bias, "logits": fully_connected(features, weight, bias)}


def normalisation(pixels: np.ndarray, mean: float, std: float, bins: int = 32) -> dict[str, dict[str, np.ndarray]]:
    """The three views of the input a network is given: raw 0-255, scaled 0-1, standardised.

    Each stage has "values" and a histogram ("counts", "edges") over its own range.
    Both steps are linear, so the histograms are the same counts on a moved axis: the
    counts are taken once, from the raw 0-255 values (torch.histc), and the edges are
    mapped through the two steps. Binning the standardised float32 values directly
    lost the black pixels: (0 - mean) / std rounded just below the float64 lower edge.
    """
    raw = torch.tensor(np.asarray(pixels, dtype=np.float32))
    scaled = raw / 255
    standard = (scaled - mean) / std
    counts = torch.histc(raw, bins, 0.0, 255.0).numpy()
    raw_edges = np.linspace(0.0, 255.0, bins + 1)
    stages = {
        "0–255": (raw, raw_edges),
        "0–1": (scaled, raw_edges / 255),
        "standardised": (standard, (raw_edges / 255 - mean) / std),
    }
    return {
        name: {"values": t.numpy(), "counts": counts.copy(), "edges": edges.astype(np.float32)}
        for name, (t, edges) in stages.items()
    }
