"""What each unit looks for: its top-activating dataset patches (Zeiler & Fergus 2014).

A unit is one channel of one layer. Over a data set we record, for every unit, the
k images that excite it most (each image counted once, at its strongest location),
then show each image cropped to the unit's receptive field around that location,
beside the unit's guided-backprop projection back to pixels.

How the work is split:
- `top_units_table` runs the data set through the network ONCE, batch by batch. Its
  graph is a private copy of the model's load-time fx trace (`activations.derived`)
  with a reduction inserted right after each layer: only a [batch, channels] max and
  its position survive each layer, so the big feature maps are freed as the pass goes
  on and nothing is hooked on the shared module.
- `receptive_box` is where a unit looks in the input: the layer table's field
  (app.networks.fields, which follows the graph through residual adds and
  concatenations) placed at the unit's position.
- `unit_projection` is attribution's guided backprop started from one unit at one
  location (`attribution.guided_units`).
- The Fashion-MNIST test-set table is stored on disk (app.serving.store), keyed by the
  weights, so it is computed once per set of weights for every process.
"""

from __future__ import annotations

import hashlib
import io
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch import fx, nn

from app.analyses import attribution
from app.base.paths import ASSETS
from app.networks.activations import derived, graph_copy
from app.networks.batches import model_inputs
from app.networks.datasets import FASHION_TEST, load_fashion_mnist
from app.networks.fields import Box, Geometry
from app.networks.loaded import LoadedModel
from app.serving import sharing, store
from app.serving.progress import Progress

Entry = tuple[float, int, int, int]  # (value, image index, y, x)

PHOTOS = ASSETS / "photos"
QUANTILES = 101  # stored per unit for ranking a new image: every percentile of the data set's maxima
LABEL_TOP = 100  # how many of a unit's best images the label statistics count, at most
MIN_LABEL_TOP = 10  # fewer counted images than this make a label chart say nothing
_STORE_VERSION = 3  # bump when the stored table's format or its computation changes
# Batch for 28x28 inputs: the whole 10k table took 6.2-8.1 s in batches of 128 against
# 11.9-17.1 s in 256 and 14.4 s in 64 (same loaded 2-core machine, alternating runs):
# 128 images' feature maps (13 MB per layer) still fit the CPU's cache.
_SMALL_BATCH = 128
_SKIPPED_KINDS = ("flatten", "dropout")  # a reshape of, or (in eval mode) identical to, the layer before


# ---------------------------------------------------------------- where a unit looks (app.networks.fields)


def receptive_box(model: LoadedModel, layer: str, y: int, x: int) -> Box:
    """The input pixels unit (y, x) of `layer` can see, possibly reaching outside the image."""
    geometry = model.layer(layer).geometry
    if geometry is None:
        return 0, 0, model.input_size, model.input_size
    return geometry.box(y, x)


def crop(values: np.ndarray, box: Box) -> np.ndarray:
    """values[..., top:bottom, left:right] with zeros where the box leaves the array.

    Zero in a normalised input is the data set's mean colour: exactly what the
    network's own zero padding shows a unit at the border.
    """
    top, left, bottom, right = box
    h, w = values.shape[-2:]
    out = np.zeros((*values.shape[:-2], bottom - top, right - left), dtype=values.dtype)
    t, lft, b, r = max(top, 0), max(left, 0), min(bottom, h), min(right, w)
    if t < b and lft < r:
        out[..., t - top : b - top, lft - left : r - left] = values[..., t:b, lft:r]
    return out


def unit_patch(model: LoadedModel, image: torch.Tensor, layer: str, y: int, x: int) -> tuple[np.ndarray, Box]:
    """(crop [C, h, w] of the pre-processed image, box): what unit (y, x) of `layer` sees.

    image: pre-processed [1, C, H, W] or [C, H, W]. The box may reach outside the image;
    the crop is zero-padded there. For a unit that sees the whole image (fully
    connected layers) the box is the image.
    """
    values = image.detach().float().cpu().numpy()
    values = values[0] if values.ndim == 4 else values
    box = receptive_box(model, layer, y, x)
    return crop(values, box), box


def unit_projection(model: LoadedModel, x: torch.Tensor, layer: str, channel: int, y: int, x_pos: int) -> np.ndarray:
    """Guided backprop from channel `channel` of `layer` at (y, x_pos) only: [C, H, W] over the whole input."""
    x = x if x.dim() == 4 else x.unsqueeze(0)
    positions = [(y, x_pos)] if model.layer(layer).spatial else None
    return unit_projections(model, x, layer, channel, positions)[0]


def _window_on_input(g: Geometry, size: int, axis: int, unit: int) -> tuple[int, int, int]:
    """(first pixel, end, the unit's index in a run on input[first:end]) along one axis.

    The window starts at a multiple of the layer's stride at or before the unit's field,
    so every earlier layer's grid lines up with the full run's, and it holds the whole
    field (clipped to the image, where the full run pads with zeros as the crop run does).
    """
    top = g.start[axis] + unit * g.stride[axis]
    first = max(top, 0) // g.stride[axis] * g.stride[axis]
    return first, min(top + g.size[axis], size), unit - first // g.stride[axis]


def _croppable(model: LoadedModel, layer: str) -> bool:
    """Whether a unit of `layer` can be computed from its receptive field alone: not after
    adaptive pooling, whose output size (and so what each unit sees) depends on the input's."""
    names = [r.name for r in model.layers]
    return not any(r.type.startswith("Adaptive") for r in model.layers[: names.index(layer) + 1])


def unit_projections(
    model: LoadedModel, x: torch.Tensor, layer: str, channel: int, positions: list[tuple[int, int]] | None
) -> np.ndarray:
    """Guided backprop from one unit per image, [N, C, H, W] (attribution.guided_units), run on
    each unit's receptive field only when that is smaller than the image.

    A unit's value and its gradient depend on its receptive field alone, so the pass runs
    on a crop of the image holding the field and the gradient is put back in place: the
    same map, at a fraction of the cost for units with small fields (VGG-16's relu4_3 sees
    92 of 224 pixels per side). To run the crops as one batch they get one size: each
    grows over more real pixels (never over the image's edge, where zeros would become
    real units of the later layers instead of padding). Checked against the full pass in
    the tests, on both models, for units in the middle and at the borders.
    """
    g = model.layer(layer).geometry
    if positions is None or g is None or not _croppable(model, layer):
        return attribution.guided_units(model, x, layer, channel, positions)
    _, h, w = model.layer(layer).out_shape
    if any(not (0 <= y < h and 0 <= x_ < w) for y, x_ in positions):
        raise ValueError(f"positions must lie inside {layer}'s {h}x{w} map")
    size = x.shape[-2:]
    windows = [[_window_on_input(g, size[a], a, p[a]) for a in (0, 1)] for p in positions]
    spans = []
    for a in (0, 1):
        longest = max(w[a][1] - w[a][0] for w in windows)
        # the one crop length; size - span is a multiple of the stride, so a crop pushed back
        # from the far edge still starts on the grid
        spans.append(size[a] - (size[a] - longest) // g.stride[a] * g.stride[a])
    if spans[0] * spans[1] >= size[0] * size[1] * 0.8:  # hardly smaller: not worth the copies
        return attribution.guided_units(model, x, layer, channel, positions)
    firsts = [[min(w[a][0], size[a] - spans[a]) for a in (0, 1)] for w in windows]
    crops = torch.stack([x[i, :, fy : fy + spans[0], fx_ : fx_ + spans[1]] for i, (fy, fx_) in enumerate(firsts)])
    inner = [
        tuple(w[a][2] + (w[a][0] - f[a]) // g.stride[a] for a in (0, 1)) for w, f in zip(windows, firsts, strict=True)
    ]
    grads = attribution.guided_units(model, crops, layer, channel, inner, check=False)
    out = np.zeros((len(x), x.shape[1], *size), dtype=np.float32)
    for i, (fy, fx_) in enumerate(firsts):
        out[i, :, fy : fy + spans[0], fx_ : fx_ + spans[1]] = grads[i]
    return out


# ---------------------------------------------------------------- the table of every unit's best images


def unit_layers(model: LoadedModel) -> list[str]:
    """Layers whose units get a table row: every layer with a map or a vector output, except
    flatten and dropout (a reshape of, and in eval mode a copy of, the layer before)."""
    return [r.name for r in model.layers if r.kind not in _SKIPPED_KINDS and len(r.out_shape) in (1, 3)]


@dataclass(eq=False)
class TopTable:
    """Every unit's k best images: per layer, arrays [channels, k], best first.

    values float32 (-inf in unused slots when the data set has fewer than k images),
    images int32 (-1 unused), ys/xs int16 (the unit's strongest position in that image;
    0 for fully connected layers). scores float32, only for layers that clamp from above
    (ReLU6, hardtanh): the value before the clamp, which is what the images are ranked
    by there (see `top_units_table`). quantiles [QUANTILES, channels]: the data set's
    per-image ranking values at every percentile, to rank a new image.
    """

    k: int
    n_images: int
    values: dict[str, np.ndarray]
    images: dict[str, np.ndarray]
    ys: dict[str, np.ndarray]
    xs: dict[str, np.ndarray]
    quantiles: dict[str, np.ndarray]
    scores: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def layers(self) -> list[str]:
        return list(self.values)

    def channels(self, layer: str) -> int:
        return self.values[self._check(layer)].shape[0]

    def _check(self, layer: str) -> str:
        if layer not in self.values:
            raise KeyError(f"no table for layer {layer!r}; it has {', '.join(self.values)}")
        return layer

    def top(self, layer: str, channel: int, k: int | None = None) -> list[Entry]:
        """[(value, image index, y, x)], best first; ties went to the lower image index."""
        layer = self._check(layer)
        n = min(k or self.k, self.k)
        idx = self.images[layer][channel, :n]
        used = idx >= 0
        return [
            (float(v), int(i), int(y), int(x))
            for v, i, y, x in zip(
                self.values[layer][channel, :n][used],
                idx[used],
                self.ys[layer][channel, :n][used],
                self.xs[layer][channel, :n][used],
                strict=True,
            )
        ]

    def ranked_by(self, layer: str, channel: int, k: int | None = None) -> list[float]:
        """The values the unit's best images were ranked by, best first: before the clamp for a
        ReLU6 or hardtanh layer, else the activations themselves (as in `top`)."""
        layer = self._check(layer)
        if layer not in self.scores:
            return [e[0] for e in self.top(layer, channel, k)]
        n = min(k or self.k, self.k)
        used = self.images[layer][channel, :n] >= 0
        return [float(v) for v in self.scores[layer][channel, :n][used]]

    def best(self, layer: str) -> list[Entry | None]:
        """Each channel's best (value, image, y, x): the layer overview."""
        layer = self._check(layer)
        return [
            self.top(layer, c, 1)[0] if self.images[layer][c, 0] >= 0 else None for c in range(self.channels(layer))
        ]

    def share_below(self, layer: str, channel: int, value: float) -> float:
        """Share (0..1) of the data set's images whose best activation of this unit is below `value`
        (for a ReLU6 or hardtanh layer: the value before the clamp, `UnitHit.score`)."""
        q = self.quantiles[self._check(layer)][:, channel].astype(np.float64)
        if value < q[0]:
            return 0.0
        if value >= q[-1]:
            return 1.0
        return float(np.interp(value, q, np.linspace(0, 1, len(q))))

    def to_bytes(self) -> bytes:
        """An .npz file (no pickled objects, so a stored table can be read safely)."""
        arrays = {"meta": np.array([self.k, self.n_images], dtype=np.int64)}
        for name in _FIELDS:
            for layer, array in getattr(self, name).items():
                arrays[f"{name}/{layer}"] = array
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes | Path) -> TopTable:
        source = io.BytesIO(data) if isinstance(data, bytes) else data
        with np.load(source, allow_pickle=False) as npz:
            fields: dict[str, dict[str, np.ndarray]] = {f: {} for f in _FIELDS}
            for key in npz.files:
                if key != "meta":
                    name, layer = key.split("/", 1)
                    fields[name][layer] = npz[key]
            k, n = (int(v) for v in npz["meta"])
        order = list(fields["values"])  # savez keeps insertion order: the network's layer order
        return cls(k, n, **{f: {layer: fields[f][layer] for layer in order if layer in fields[f]} for f in fields})


_FIELDS = ("values", "images", "ys", "xs", "quantiles", "scores")


def _unit_maxima(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image and channel: the largest value and its flat position y * W + x (the first in raster order).

    torch's max-with-index over the positions of a channels-last map ran 10x slower than
    the forward pass it followed (scalar code; benchmarks/dataset_examples.py), so for
    channels-last maps it is done in two vectorised steps on the [N, H, W, C] view: each
    row's maximum, then the best row (first on ties) and the first column in it that
    holds the maximum. Same values and positions, about 11x faster on VGG-16's conv1.
    """
    if t.dim() == 2:
        return t, torch.zeros_like(t, dtype=torch.long)
    n, c, _, w = t.shape
    if not t.is_contiguous(memory_format=torch.channels_last) or t.is_contiguous():
        return t.flatten(2).max(2)
    q = t.permute(0, 2, 3, 1)  # [N, H, W, C], a view without copying
    values, y = q.amax(2).max(1)  # [N, C]
    row = q.gather(1, y[:, None, None, :].expand(n, 1, w, c))[:, 0]  # [N, W, C]: each best row
    x = (row == values[:, None, :]).to(torch.uint8).argmax(1)
    return values, y * w + x


def _relu_of_maxima(maxima: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """A ReLU's maxima from its input's, without touching the map: ReLU keeps the order of positive
    values, so the largest output is the rectified largest input at the same (first) position;
    when no input is positive every output is 0 and the first position is 0."""
    values, positions = maxima[0], maxima[1]
    return values.clamp(min=0), torch.where(values > 0, positions, torch.zeros_like(positions))


def _clamp_of_maxima(
    maxima: tuple[torch.Tensor, ...], low: float, high: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A ReLU6's (or hardtanh's) maxima from its input's: (clamped max, position, max before the clamp).

    A clamp keeps the order of its input, so the largest output is the clamped largest
    input. Its position is the input's (first) largest: where the unit is driven hardest,
    which among the many places saturated at the ceiling is the one that matters. The
    value before the clamp is what the images are ranked by (`top_units_table`).
    """
    values, positions = maxima[0], maxima[1]
    return values.clamp(low, high), positions, values


def _is_relu(model: LoadedModel, node: fx.Node) -> bool:
    if node.op == "call_module":
        return isinstance(model.module.get_submodule(node.target), nn.ReLU)
    return node.op == "call_function" and node.target in (torch.relu, torch.nn.functional.relu)


def _upper_clamp(model: LoadedModel, node: fx.Node) -> tuple[float, float] | None:
    """(low, high) of a node that clamps from above (nn.ReLU6, any nn.Hardtanh, F.relu6, F.hardtanh), else None."""
    if node.op == "call_module":
        module = model.module.get_submodule(node.target)
        return (float(module.min_val), float(module.max_val)) if isinstance(module, nn.Hardtanh) else None
    if node.op == "call_function" and node.target is F.relu6:
        return 0.0, 6.0
    if node.op == "call_function" and node.target is F.hardtanh:
        args = dict(zip(("input", "min_val", "max_val"), node.args, strict=False)) | dict(node.kwargs)
        return float(args.get("min_val", -1.0)), float(args.get("max_val", 1.0))
    return None


def clamped_layers(model: LoadedModel) -> frozenset[str]:
    """Layers that clamp from above (ReLU6, hardtanh): their images are ranked by the value before the clamp."""

    def build() -> frozenset[str]:
        graph = graph_copy(model)
        outputs = next(n for n in graph.nodes if n.op == "output").args[0]
        return frozenset(name for name, node in outputs.items() if _upper_clamp(model, node) is not None)

    return model.cached("clamped_layers", build)


def _maxima_graph(model: LoadedModel, layers: Sequence[str]) -> fx.GraphModule:
    """The model's graph returning {layer: (max [N, C], position [N, C])}, and for a layer that
    clamps from above also the max before the clamp: (max, position, max before); built once
    per model and layer set.

    A ReLU whose input is also reported takes its maxima from its input's (a third of the
    reductions in VGG-16: each one reads a whole feature map). A ReLU6 or hardtanh always
    does: its input's maxima are reduced before the clamp runs (an in-place clamp would
    overwrite them), unless its input is reported and reduced already."""

    def edit(graph: fx.Graph) -> None:
        output = next(n for n in graph.nodes if n.op == "output")
        outputs = output.args[0]
        reduced: dict[str, fx.Node] = {}
        by_node = {outputs[name]: name for name in layers}
        for name in layers:
            node = outputs[name]
            before = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
            source = by_node.get(before)
            if (bounds := _upper_clamp(model, node)) is not None and before is not None:
                if source in reduced:
                    maxima = reduced[source]
                else:
                    with graph.inserting_before(node):
                        maxima = graph.call_function(_unit_maxima, (before,))
                with graph.inserting_after(node):
                    reduced[name] = graph.call_function(_clamp_of_maxima, (maxima, *bounds))
                continue
            with graph.inserting_after(node):  # right after the layer: its map can be freed early
                if _is_relu(model, node) and source in reduced:
                    reduced[name] = graph.call_function(_relu_of_maxima, (reduced[source],))
                else:
                    reduced[name] = graph.call_function(_unit_maxima, (node,))
        output.args = (reduced,)

    return model.cached(("unit_maxima", tuple(layers)), lambda: derived(model, edit=edit))


def top_units_table(
    model: LoadedModel,
    images: torch.Tensor | Iterable[torch.Tensor],
    k: int = 9,
    progress: Progress | None = None,
    *,
    total: int | None = None,
    layers: Sequence[str] | None = None,
    batch_size: int | None = None,
) -> TopTable:
    """Every unit's k best images over a data set, in one forward pass per batch.

    images: pre-processed float [N, C, H, W], or an iterable of such batches (images are
    numbered in the order they arrive). For each unit of a spatial layer each image
    counts once, with its largest activation over positions (the first in raster order
    on ties); for fully connected layers the unit's value. Ties between images go to
    the lower index. A layer that clamps from above (ReLU6, hardtanh: `clamped_layers`)
    ranks by the value before the clamp, at that value's position: a trained
    EfficientNet-Lite has many images at exactly 6 for a unit, and ranking by the
    clamped value alone would order them by index, not by how hard they drive it.
    layers: default `unit_layers(model)`. total: the number of images,
    for progress, when `images` is an iterable. Runs in fp32, so a stored value can be
    recomputed exactly; batches run beside other sessions' passes (app.serving.sharing).
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    layers = list(layers or unit_layers(model))
    graph = _maxima_graph(model, layers)
    if isinstance(images, torch.Tensor):
        total = len(images)
        images = model_inputs(model, images, batch_size or _SMALL_BATCH)
    top_v = {name: None for name in layers}
    top_i, top_p, top_s = dict(top_v), dict(top_v), dict(top_v)
    maxima: dict[str, list[np.ndarray]] = {name: [] for name in layers}
    n = 0
    for x in images:
        with sharing.forward(), torch.inference_mode(), torch.autocast(model.device.type, enabled=False):
            out = graph(x.to(model.device, torch.float32, memory_format=torch.channels_last))
        index = np.arange(n, n + len(x), dtype=np.int32)
        for name in layers:
            values, positions, *before = out[name]
            values, positions = values.float().cpu().numpy().T, positions.cpu().numpy().T  # [C, batch]
            scores = before[0].float().cpu().numpy().T if before else values  # what the images are ranked by
            maxima[name].append(scores)
            if top_v[name] is None:
                cand_v, cand_i, cand_p, cand_s = values, np.broadcast_to(index, values.shape), positions, scores
            else:  # earlier images first: a stable sort then breaks ties by image index
                cand_v = np.concatenate([top_v[name], values], axis=1)
                cand_i = np.concatenate([top_i[name], np.broadcast_to(index, values.shape)], axis=1)
                cand_p = np.concatenate([top_p[name], positions], axis=1)
                cand_s = np.concatenate([top_s[name], scores], axis=1)
            order = np.argsort(-cand_s, axis=1, kind="stable")[:, :k]
            top_v[name] = np.take_along_axis(cand_v, order, 1)
            top_i[name] = np.take_along_axis(cand_i, order, 1)
            top_p[name] = np.take_along_axis(cand_p, order, 1)
            top_s[name] = np.take_along_axis(cand_s, order, 1)
        n += len(x)
        if progress is not None:
            progress(n, max(total or 0, n))
    if n == 0:
        raise ValueError("no images given")
    table = TopTable(k, n, {}, {}, {}, {}, {})
    clamped = clamped_layers(model)
    for name in layers:
        width = model.layer(name).out_shape[-1] if model.layer(name).spatial else 1
        pad = k - top_v[name].shape[1]  # fewer images than k
        table.values[name] = np.pad(top_v[name].astype(np.float32), ((0, 0), (0, pad)), constant_values=-np.inf)
        table.images[name] = np.pad(top_i[name].astype(np.int32), ((0, 0), (0, pad)), constant_values=-1)
        table.ys[name] = np.pad((top_p[name] // width).astype(np.int16), ((0, 0), (0, pad)))
        table.xs[name] = np.pad((top_p[name] % width).astype(np.int16), ((0, 0), (0, pad)))
        if name in clamped:
            table.scores[name] = np.pad(top_s[name].astype(np.float32), ((0, 0), (0, pad)), constant_values=-np.inf)
        every = np.sort(np.concatenate(maxima[name], axis=1), axis=1)  # [channels, N]
        rows = np.round(np.linspace(0, n - 1, QUANTILES)).astype(int)
        table.quantiles[name] = np.ascontiguousarray(every[:, rows].T.astype(np.float32))
    return table


# ---------------------------------------------------------------- data sets


def fashion_inputs(model: LoadedModel, indices: Sequence[int] | None = None) -> torch.Tensor:
    """Pre-processed Fashion-MNIST test images [N, 1, 28, 28] (all, or those at `indices`)."""
    images, _ = load_fashion_mnist("test")
    chosen = images if indices is None else images[torch.as_tensor(list(indices), dtype=torch.long)]
    return torch.cat(list(model_inputs(model, chosen, 1024)))


def photo_inputs(model: LoadedModel, photos: Sequence[Image.Image]) -> torch.Tensor:
    """Pre-processed photos [N, C, H, W] (the model's own resize and crop)."""
    return torch.cat(list(model_inputs(model, list(photos), 64)))


TABLE_CODEC = store.Codec(TopTable.to_bytes, TopTable.from_bytes, "npz")


def fashion_test_table(
    model: LoadedModel, k: int = LABEL_TOP, progress: Progress | None = None, keep: bool = True
) -> TopTable:
    """Every unit's k best Fashion-MNIST test images (all 10,000), stored on disk per set of weights.

    The first call computes it (seconds) and writes it to the store for every later call
    and process; a changed network gets a new key, so a stale table is never read.
    keep=False (a network trained in a user's session) computes without writing.
    """

    def compute() -> TopTable:
        images, _ = load_fashion_mnist("test")
        return top_units_table(model, model_inputs(model, images, _SMALL_BATCH), k, progress, total=len(images))

    return store.kept("units", model, compute, TABLE_CODEC, keep, version=_STORE_VERSION, data=FASHION_TEST, k=k)


def stored_fashion_table(model: LoadedModel, k: int = LABEL_TOP) -> TopTable | None:
    """The Fashion test-set table if it is already on disk, else None: never computes it.

    For pages that show a unit's best patches only as a bonus (the Dreams page): reading
    the file takes milliseconds, computing the table seconds to minutes, which such a
    page must not start without asking.
    """
    return store.read_stored("units", model, TABLE_CODEC, version=_STORE_VERSION, data=FASHION_TEST, k=k)


def images_table(
    model: LoadedModel,
    images: Sequence[Image.Image],
    progress: Progress | None = None,
    keep_as: str | None = None,
) -> TopTable:
    """Every unit's best among `images` (the bundled photos, a teacher's collection, an upload).

    keep_as names the data set in the store (its content must be part of the name, see
    `photos_name`); None computes without keeping, as for a student's upload, whose
    pictures never reach the disk.
    """

    def compute() -> TopTable:
        batches = model_inputs(model, list(images), 16)
        return top_units_table(model, batches, min(LABEL_TOP, len(images)), progress, total=len(images))

    return store.kept("units", model, compute, TABLE_CODEC, keep_as is not None, version=_STORE_VERSION, data=keep_as)


@dataclass(frozen=True)
class Photo:
    name: str  # "<subject>/<variant>": the folder part is its label, as for uploaded collections
    image: Image.Image


def bundled_photos(side: int = 256) -> list[Photo]:
    """The bundled photo set for VGG-16: each photo in assets/photos (licences in its LICENSE.md)
    as 20 deterministic variants: whole, five crops at 70 %, four corner crops at 50 %, each
    also mirrored. No ImageNet here; this gives a unit 200 real pictures to choose from."""
    variants = [(1.0, 0.5, 0.5)]
    variants += [(0.7, fy, fx) for fy, fx in ((0, 0), (0, 1), (1, 0), (1, 1), (0.5, 0.5))]
    variants += [(0.5, fy, fx) for fy, fx in ((0, 0), (0, 1), (1, 0), (1, 1))]
    out = []
    for path in sorted(PHOTOS.glob("*.jpg")):
        with Image.open(path) as f:
            img = f.convert("RGB")
        for scale, along_y, along_x in variants:
            w, h = round(img.width * scale), round(img.height * scale)
            left, top = round((img.width - w) * along_x), round((img.height - h) * along_y)
            piece = img.crop((left, top, left + w, top + h)).resize((side, side), Image.Resampling.LANCZOS)
            tag = f"{int(scale * 100)}-{along_y:g}-{along_x:g}"
            out.append(Photo(f"{path.stem}/{tag}", piece))
            out.append(Photo(f"{path.stem}/{tag}-mirrored", ImageOps.mirror(piece)))
    return out


def photos_name() -> str:
    """The bundled photo set's name in the store: changes when a photo file does."""
    h = hashlib.sha256()
    for path in sorted(PHOTOS.glob("*.jpg")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return f"photos-{h.hexdigest()[:16]}"


# ---------------------------------------------------------------- what the page shows for one unit


@dataclass(frozen=True)
class Example:
    """One of a unit's best images: where it fired, the patch it saw and its projection there."""

    value: float
    image: int
    y: int
    x: int
    box: Box
    patch: np.ndarray  # [C, h, w] pre-processed input, zero outside the image
    projection: np.ndarray  # [C, h, w] guided backprop from the unit, same crop


def unit_examples(
    model: LoadedModel,
    table: TopTable,
    inputs: Callable[[list[int]], torch.Tensor],
    layer: str,
    channel: int,
    n: int = 9,
    keep_as: str | None = None,
) -> list[Example]:
    """The unit's n best images as patches with projections (one batched guided pass for all n).

    inputs(indices) returns those data-set images pre-processed, [len, C, H, W]. keep_as:
    the data set's name in the store (as given to the table), so the view a page opens on
    is computed once per server (`make warm`); None computes without keeping (an upload).
    """
    spec = {"version": _STORE_VERSION, "data": keep_as, "k": table.k, "layer": layer, "channel": channel, "n": n}
    return store.kept(
        "unit_examples",
        model,
        lambda: _unit_examples(model, table, inputs, layer, channel, n),
        keep=keep_as is not None,
        **spec,
    )


def _unit_examples(
    model: LoadedModel,
    table: TopTable,
    inputs: Callable[[list[int]], torch.Tensor],
    layer: str,
    channel: int,
    n: int,
) -> list[Example]:
    entries = table.top(layer, channel, n)
    if not entries:
        return []
    x = inputs([e[1] for e in entries])
    spatial = model.layer(layer).spatial
    grads = unit_projections(model, x, layer, channel, [(e[2], e[3]) for e in entries] if spatial else None)
    out = []
    for (value, index, y, x_pos), image, grad in zip(entries, x, grads, strict=True):
        patch, box = unit_patch(model, image, layer, y, x_pos)
        out.append(Example(value, index, y, x_pos, box, patch, crop(grad, box)))
    return out


def best_patches(
    model: LoadedModel,
    table: TopTable,
    inputs: Callable[[list[int]], torch.Tensor],
    layer: str,
    channels: range,
    keep_as: str | None = None,
) -> list[np.ndarray | None]:
    """The layer overview: for each channel, the patch of its single best image ([C, h, w]; None if none).

    keep_as as for `unit_examples`."""
    spec = {"version": _STORE_VERSION, "data": keep_as, "k": table.k, "layer": layer}
    return store.kept(
        "unit_overview",
        model,
        lambda: _best_patches(model, table, inputs, layer, channels),
        keep=keep_as is not None,
        channels=[channels.start, channels.stop],
        **spec,
    )


def _best_patches(
    model: LoadedModel, table: TopTable, inputs: Callable[[list[int]], torch.Tensor], layer: str, channels: range
) -> list[np.ndarray | None]:
    best = table.best(layer)[channels.start : channels.stop]
    found = [e for e in best if e is not None]
    x = iter(inputs([e[1] for e in found]) if found else [])
    return [None if e is None else unit_patch(model, next(x), layer, e[2], e[3])[0] for e in best]


def default_layer(model: LoadedModel, layers: Sequence[str]) -> str:
    """The layer the page opens on: the deepest rectified (ReLU or ReLU6) map whose units'
    receptive field is at most half the input's side; else the deepest map that fits; else
    the first layer.

    Deeper units detect larger, more meaningful things, but once a unit's field outgrows
    the picture every "patch" is the whole image shrunk into padding, its box covers
    everything and its best positions are chosen by where the field overhangs the border
    (EfficientNet-Lite0's last map sees 851 px of a 224 px input). A field of at most half
    the side still shows a part of the picture, and leaves room for positions inside it.
    """
    fits = [
        name
        for name in layers
        if model.layer(name).spatial and (rf := model.layer(name).rf) is not None and rf <= model.input_size / 2
    ]
    rectified = [name for name in fits if model.layer(name).kind == "relu"]
    return (rectified or fits)[-1] if fits else layers[0]


def reaches_padding(model: LoadedModel, box: Box) -> bool:
    """Whether a receptive field reaches beyond the image, into the zero padding around it."""
    top, left, bottom, right = box
    return top < 0 or left < 0 or bottom > model.input_size or right > model.input_size


def border_note(model: LoadedModel, layer: str, boxes: Sequence[Box]) -> str | None:
    """A warning when most of the best positions' fields (their boxes) reach into the padding, else None.

    Zero padding is a strong, image-independent signal at the border: a unit can fire
    there because of the edge of the picture, not because of anything in it.
    """
    if model.layer(layer).geometry is None:
        return None  # units that see the whole image: there is no position to speak of
    at_border = sum(reaches_padding(model, box) for box in boxes)
    if not boxes or at_border * 2 <= len(boxes):
        return None
    return (
        f"{at_border} of these {len(boxes)} patches reach past the image's edge (grey): this unit may be "
        "answering to the border itself (the network's zero padding), not to something in the pictures."
    )


def describe_box(model: LoadedModel, layer: str) -> str:
    """A unit's field in words, e.g. "a 14×14 patch, neighbouring units 2 px apart"."""
    g = model.layer(layer).geometry
    if g is None:
        return "the whole image"
    return f"a {g.size[0]}×{g.size[1]} patch (neighbouring units {g.stride[0]} px apart)"


def to_rgb(model: LoadedModel, values: np.ndarray) -> np.ndarray:
    """A pre-processed input or patch [C, h, w] back to 0..1 RGB pixels [h, w, 3] (grey repeated)."""
    rgb = model.denormalise(torch.from_numpy(np.ascontiguousarray(values))).numpy().transpose(1, 2, 0)
    return np.repeat(rgb, 3, axis=2) if rgb.shape[2] == 1 else rgb


class UnitHit(NamedTuple):
    """How strongly one image excites a unit, and where: as a data-set image counts in the table."""

    value: float  # the unit's largest activation over positions
    y: int
    x: int
    score: float  # what images are ranked by: the value before the clamp for a ReLU6 or hardtanh, else `value`


def unit_on_image(model: LoadedModel, x: torch.Tensor, layer: str, channel: int) -> UnitHit:
    """The unit's strongest position in one pre-processed image, found as `top_units_table` finds it."""
    graph = _maxima_graph(model, [layer])
    x = x if x.dim() == 4 else x.unsqueeze(0)
    with sharing.forward(), torch.inference_mode(), torch.autocast(model.device.type, enabled=False):
        values, positions, *before = graph(x[:1].to(model.device, torch.float32, memory_format=torch.channels_last))[
            layer
        ]
    if not 0 <= channel < values.shape[1]:
        raise ValueError(f"{layer} has {values.shape[1]} channels; got channel {channel}")
    width = model.layer(layer).out_shape[-1] if model.layer(layer).spatial else 1
    flat = int(positions[0, channel])
    score = float((before[0] if before else values)[0, channel])
    return UnitHit(float(values[0, channel]), flat // width, flat % width, score)


def label_chart_top(labels: Sequence[str], k: int) -> int | None:
    """How many of a unit's best images a label chart should count, or None where it would teach nothing.

    The chart asks whether a unit prefers one label, which it can only show if one label
    could fill every counted place: so it counts at most half the images of the smallest
    label (and at most the table's k and LABEL_TOP). It needs two labels or more and at
    least MIN_LABEL_TOP counted images: Fashion-MNIST's test set (1,000 per label) counts
    100; a collection with 30 images in its smallest folder counts 15; the bundled photos
    (20 crops of each photo) would count 10 crops per unit and only tell photos apart, so
    the page shows them differently.
    """
    sizes = Counter(labels)
    if len(sizes) < 2:
        return None
    top = min(LABEL_TOP, k, min(sizes.values()) // 2)
    return top if top >= MIN_LABEL_TOP else None


def count_labels(labels: Iterable[str]) -> dict[str, int]:
    """{label: how often it occurs}, most frequent first (then alphabetical)."""
    return dict(sorted(Counter(labels).items(), key=lambda item: (-item[1], item[0])))


def label_counts(
    table: TopTable, layer: str, channel: int, labels: Sequence[str], top: int = LABEL_TOP
) -> dict[str, int]:
    """How many of the unit's `top` best images carry each label, most frequent first."""
    return count_labels(labels[index] for _, index, _, _ in table.top(layer, channel, top))
