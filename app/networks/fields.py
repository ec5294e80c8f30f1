"""Where each layer's units look in the input: receptive fields worked out on the fx graph.

One walker serves the layer table (receptive field, stride at the input, where the
first field starts) and "What units look for" (the box a unit sees). It runs the
traced graph once on a blank input, so each node's rule knows its input and output
sizes, and follows the graph rather than a list of layers: residual additions and
concatenations get the union of their branches' fields.

Rules, per axis (rows, columns), so non-square kernels are handled:
- conv and pooling slide a window: the field grows by (kernel - 1) x dilation x the
  current stride, the stride multiplies, and the padding moves the first field's start
  back into the zero border;
- explicit padding layers (EfficientNet-Lite0's TensorFlow-style ZeroPad2d) add units
  before the first one: the start moves, size and stride stay;
- adaptive pooling that divides its input evenly is a window too; global pooling to
  1x1, flattening and anything not 4-D see the whole image (None);
- a node that keeps the map size (batch norm, activations, adds, concatenations) takes
  the union of its inputs' fields. An input broadcast from 1x1 (a squeeze-and-excitation
  gate) only rescales channels and is left out, though strictly it sees the whole image;
- an unknown operation that changes the map size is taken to see the whole image.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import fx, nn

from app.serving import sharing

Box = tuple[int, int, int, int]  # (top, left, bottom, right) in input pixels, bottom/right exclusive


@dataclass(frozen=True)
class Geometry:
    """Where the units of one layer look in the input, per axis (rows, columns).

    Unit (y, x) sees input rows start[0] + y * stride[0] up to (excluding) that plus
    size[0], and likewise for columns. start is negative where the first unit's field
    reaches into the zero padding around the image.
    """

    size: tuple[int, int]
    stride: tuple[int, int]
    start: tuple[int, int]

    def box(self, y: int, x: int) -> Box:
        top = self.start[0] + y * self.stride[0]
        left = self.start[1] + x * self.stride[1]
        return top, left, top + self.size[0], left + self.size[1]


def _pairs(*values: int | tuple[int, ...]) -> list[tuple[int, int]]:
    return [(v, v) if isinstance(v, int) else (int(v[0]), int(v[-1])) for v in values]


def _window(g: Geometry, kernel, stride, padding, dilation) -> Geometry:
    """A sliding window (conv or pool) over a layer of geometry g.

    Output unit y reads input units y*s - p + i*d (i < k), whose fields run from
    start + (y*s - p) * jump to start + (y*s - p + (k-1)*d) * jump + size.
    """
    k, s, p, d = _pairs(kernel, stride if stride is not None else kernel, padding, dilation)
    return Geometry(
        tuple(g.size[a] + (k[a] - 1) * d[a] * g.stride[a] for a in (0, 1)),
        tuple(g.stride[a] * s[a] for a in (0, 1)),
        tuple(g.start[a] - p[a] * g.stride[a] for a in (0, 1)),
    )


def _conv_padding(conv: nn.Conv2d) -> tuple[int, int]:
    if conv.padding == "valid":
        return (0, 0)
    if conv.padding == "same":  # PyTorch puts the smaller half of the total padding first
        return tuple(conv.dilation[a] * (conv.kernel_size[a] - 1) // 2 for a in (0, 1))
    return tuple(conv.padding)


def _union(geometries: list[Geometry]) -> Geometry | None:
    """Units of a merge (add, multiply, concatenate) see what any of their inputs' units see."""
    if len({g.stride for g in geometries}) != 1:
        return None  # branches at different resolutions: no single box rule; treat as the whole image
    start = tuple(min(g.start[a] for g in geometries) for a in (0, 1))
    end = tuple(max(g.start[a] + g.size[a] for g in geometries) for a in (0, 1))
    return Geometry(tuple(end[a] - start[a] for a in (0, 1)), geometries[0].stride, start)


class _FieldPass(fx.Interpreter):
    """Runs the graph once on a blank input, working out each node's Geometry from its inputs'."""

    def __init__(self, module: fx.GraphModule) -> None:
        super().__init__(module)
        self.geometry: dict[fx.Node, Geometry | None] = {}
        self.shapes: dict[fx.Node, tuple[int, ...]] = {}

    def run_node(self, n: fx.Node):
        out = super().run_node(n)
        if isinstance(out, torch.Tensor):
            self.shapes[n] = tuple(out.shape)
            self.geometry[n] = self._rule(n, tuple(out.shape)) if out.dim() == 4 else None
        return out

    def _rule(self, n: fx.Node, shape: tuple[int, ...]) -> Geometry | None:
        if n.op == "placeholder":
            return Geometry((1, 1), (1, 1), (0, 0))
        inputs = [a for a in n.all_input_nodes if len(self.shapes.get(a, ())) == 4]
        spatial = [a for a in inputs if self.shapes[a][2:] != (1, 1) or shape[2:] == (1, 1)]
        if not spatial or any(self.geometry[a] is None for a in spatial):
            return None
        geometries = [self.geometry[a] for a in spatial]
        if n.op == "call_module":
            layer = self.module.get_submodule(n.target)
            if isinstance(layer, nn.Conv2d):
                return _window(geometries[0], layer.kernel_size, layer.stride, _conv_padding(layer), layer.dilation)
            if isinstance(layer, nn.MaxPool2d | nn.AvgPool2d):
                dilation = getattr(layer, "dilation", 1)
                return _window(geometries[0], layer.kernel_size, layer.stride, layer.padding, dilation)
            if isinstance(layer, nn.ZeroPad2d | nn.ConstantPad2d):
                # (left, right, top, bottom): new units before the first one, same fields and step
                left, _, top, _ = layer.padding
                g = geometries[0]
                return Geometry(g.size, g.stride, (g.start[0] - top * g.stride[0], g.start[1] - left * g.stride[1]))
            if isinstance(layer, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d):
                (h_in, w_in), (h, w) = self.shapes[spatial[0]][2:], shape[2:]
                if (h, w) == (1, 1) or h_in % h or w_in % w:
                    return None  # global pooling (or uneven windows): each unit sees the whole image
                return _window(geometries[0], (h_in // h, w_in // w), (h_in // h, w_in // w), 0, 1)
        if any(self.shapes[a][2:] != shape[2:] for a in spatial):
            return None  # an operation we do not know that changes the map size: be safe, whole image
        return _union(geometries)


def node_fields(
    module: nn.Module, graph: fx.Graph, input_shape: tuple[int, ...]
) -> tuple[dict[fx.Node, Geometry | None], dict[fx.Node, tuple[int, ...]]]:
    """Each node's Geometry (None: sees the whole image) and output shape, from one blank pass.

    graph: an fx graph of `module` (app.networks.layers.trace); input_shape: one input
    without the batch dimension, e.g. (3, 224, 224).
    """
    if module.training:  # a pass in training mode would move batch-norm statistics: walk a copy
        module = copy.deepcopy(module).eval()
    walker = _FieldPass(fx.GraphModule(module, graph))
    param = next(module.parameters(), None)
    blank = torch.zeros(1, *input_shape, device=param.device if param is not None else "cpu")
    with sharing.forward(), torch.inference_mode():
        walker.run(blank)
    return walker.geometry, walker.shapes
