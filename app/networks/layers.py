"""The layer table: what each layer is, what it outputs and what it can see.

A network is read from its torch.fx graph, so the table follows what the forward
pass really does, in order, including functions between modules (residual
additions, flatten) and modules called twice (ResNet's ReLU: `layer1.0.relu_1`).

Names: a plain chain of layers (VGG, the Fashion CNN) follows the VGG paper's
convention (conv3_2 = second conv of block 3, pool3 ends block 3, fc6.. for the
classifier) so a teacher can point at the diagram in the lesson and find the same
layer here. A network with branches keeps its own module paths, which already say
where a layer sits block by block (`stage3.block2.depthwise_conv`, `layer4.1.add`).

Receptive fields come from app.networks.fields, which walks the same graph on a blank
input (so the table needs the input's shape): a convolution or pooling layer grows the
field by (kernel - 1) x the current stride and shifts its start by its padding; where
branches meet (a residual addition) the field is the union of the branches' fields.
Global pooling, flatten and fully connected layers see the whole image. The table shows
the vertical axis; `LayerInfo.geometry` has both.
"""

from __future__ import annotations

import copy
import math
import operator
import threading
from dataclasses import dataclass

import torch
import torchvision
from torch import fx, nn
from torchvision.models.feature_extraction import NodePathTracer

from app.networks.fields import Geometry, node_fields
from app.serving import sharing

# One trace at a time, and none while a forward pass runs (app.serving.sharing): torch.fx patches
# nn.Module.__call__ process-wide while it traces.
TRACE_LOCK = threading.Lock()

_KINDS = {
    nn.Conv2d: "conv",
    nn.BatchNorm2d: "bn",
    nn.BatchNorm1d: "bn",
    nn.ReLU: "relu",
    nn.ReLU6: "relu",
    nn.MaxPool2d: "pool",
    nn.AvgPool2d: "pool",
    nn.AdaptiveAvgPool2d: "avgpool",
    nn.Flatten: "flatten",
    nn.Dropout: "dropout",
    nn.Linear: "fc",
    nn.ZeroPad2d: "pad",
}
# functions in a graph that get their own row: where branches merge, and flatten
_FUNCTION_KINDS = {
    operator.add: "add",
    operator.iadd: "add",
    torch.add: "add",
    torch.cat: "concat",
    torch.flatten: "flatten",
}


@dataclass(frozen=True)
class LayerInfo:
    name: str  # display name, e.g. "conv5_3"; the key of activations()
    path: str  # module path inside the network, e.g. "features.28" (a function's graph path for add/flatten)
    kind: str  # conv, bn, relu, pool, avgpool, flatten, dropout, fc, pad, add, concat
    type: str  # the torch class name (or function name)
    params: int  # counted at the first use of a module only, so the column sums to the network's total
    geometry: Geometry | None  # where its units look in the input; None = the whole image
    out_shape: tuple[int, ...] = ()  # per sample, from the blank pass that worked out the fields
    node: str = ""  # the graph node's name (torchvision's feature-extraction naming); "" = same as path

    @property
    def spatial(self) -> bool:
        return len(self.out_shape) == 3

    @property
    def graph_node(self) -> str:
        return self.node or self.path

    @property
    def rf(self) -> int | None:
        """Receptive field side in input pixels (rows); None = whole image."""
        return self.geometry.size[0] if self.geometry else None

    @property
    def rf_stride(self) -> int | None:
        """Input pixels between neighbouring outputs (rows); None after global pooling or flattening."""
        return self.geometry.stride[0] if self.geometry else None

    @property
    def rf_start(self) -> int | None:
        """Input row where output 0's field starts (< 0 = in the padding)."""
        return self.geometry.start[0] if self.geometry else None

    def rf_box(self, index: int, input_size: int) -> tuple[int, int]:
        """[first, last] input pixel (inclusive, clipped) seen by output `index` along an axis."""
        if self.rf is None or self.rf_start is None or self.rf_stride is None:
            return 0, input_size - 1
        first = self.rf_start + index * self.rf_stride
        return max(first, 0), min(first + self.rf - 1, input_size - 1)


def leaf_layers(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """Leaf modules in definition order (for chains, also the order they run in)."""
    return [(p, m) for p, m in module.named_modules() if p and not list(m.children())]


_traces: dict[tuple, tuple[fx.Graph, list[str | None]]] = {}


def structure(module: nn.Module) -> tuple:
    """What makes two networks trace to the same graph: class, layer paths and types."""
    return (type(module).__qualname__, tuple((path, type(m).__name__) for path, m in leaf_layers(module)))


def trace(module: nn.Module) -> tuple[fx.Graph, dict[fx.Node, str]]:
    """A fresh copy of the module's fx graph down to leaf modules, and each node's torchvision-style name.

    Each architecture is traced once per process; networks of the same structure (a
    network trained in a session) get copies of that trace. Unlike torchvision's feature
    extractor, torchvision.ops blocks (Conv2dNormActivation, SqueezeExcitation) are traced
    through, so their convolutions get rows of their own.
    """
    key = structure(module)
    with TRACE_LOCK:
        if key not in _traces:
            tracer = NodePathTracer(autowrap_modules=(math, torchvision.ops))
            with sharing.exclusive():  # tracing patches nn.Module.__call__ process-wide
                graph = tracer.trace(module)
            _traces[key] = graph, [tracer.node_to_qualname.get(n) for n in graph.nodes]
        graph, names = _traces[key]
        graph = copy.deepcopy(graph)
    return graph, {node: name for node, name in zip(graph.nodes, names, strict=True) if name is not None}


def _is_chain(graph: fx.Graph) -> bool:
    prev = None
    for node in graph.nodes:
        if node.op in ("placeholder", "output"):
            prev = node if node.op == "placeholder" else prev
            continue
        if node.op == "get_attr" or node.all_input_nodes != [prev]:
            return False
        prev = node
    return True


def layer_table(module: nn.Module, input_shape: tuple[int, ...]) -> list[LayerInfo]:
    """Names, kinds, params, receptive fields and output shapes, in execution order.

    input_shape: one input without the batch dimension, e.g. (3, 224, 224); the fields and
    shapes come from one pass of a blank input through the graph (app.networks.fields).
    """
    graph, qualnames = trace(module)
    fields, shapes = node_fields(module, graph, input_shape)
    rows: list[LayerInfo] = []
    counted: set[str] = set()
    for node in graph.nodes:
        if node.op == "call_module":
            m = module.get_submodule(node.target)
            kind, type_name = _KINDS.get(type(m), type(m).__name__.lower()), type(m).__name__
            params = 0 if node.target in counted else sum(p.numel() for p in m.parameters())
            counted.add(node.target)
            path = node.target
        elif node.op == "call_function" and node.target in _FUNCTION_KINDS:
            kind, type_name, params, path = _FUNCTION_KINDS[node.target], node.target.__name__, 0, qualnames[node]
        else:  # the input, the output, and functions or methods without a row (F.relu, x.view)
            continue
        name, shape = qualnames[node], shapes.get(node, ())[1:]
        rows.append(LayerInfo(name, path, kind, type_name, params, fields.get(node), shape, node=name))
    return _paper_names(rows) if _is_chain(graph) else rows


def _paper_names(rows: list[LayerInfo]) -> list[LayerInfo]:
    """VGG-paper names for a chain: convA_B, poolA, reluA_B, fcN (see the module docstring)."""
    out: list[LayerInfo] = []
    block, conv_in_block, fc_index = 1, 0, 0
    suffix = ""
    for row in rows:
        kind = row.kind
        if kind == "conv":
            conv_in_block += 1
            suffix = f"{block}_{conv_in_block}"
            name = f"conv{suffix}"
        elif kind == "pool":
            name = f"pool{block}"
            block, conv_in_block, suffix = block + 1, 0, str(block)
        elif kind == "fc":
            fc_index = fc_index or block
            name = f"fc{fc_index}"
            suffix = str(fc_index)
            fc_index += 1
        elif kind in ("avgpool", "flatten"):
            name = kind
        else:
            name = f"{kind}{suffix}"
        out.append(LayerInfo(**{**row.__dict__, "name": name}))
    return _dedupe(out)


def _dedupe(rows: list[LayerInfo]) -> list[LayerInfo]:
    """Make names unique (e.g. two dropouts after fc6) by numbering repeats."""
    seen: dict[str, int] = {}
    out = []
    for row in rows:
        n = seen.get(row.name, 0)
        seen[row.name] = n + 1
        out.append(row if n == 0 else LayerInfo(**{**row.__dict__, "name": f"{row.name}_{chr(97 + n)}"}))
    return out


def rf_for_size(row: LayerInfo, input_size: int) -> int:
    """Receptive field clipped to the image: a layer cannot see more than is there."""
    return input_size if row.rf is None else min(row.rf, input_size)


def total_params(rows: list[LayerInfo]) -> int:
    return sum(r.params for r in rows)


def describe_rf(row: LayerInfo, input_size: int) -> str:
    if row.rf is None:
        return "whole image"
    clipped = rf_for_size(row, input_size)
    return f"{clipped}x{clipped}" if clipped == row.rf else f"{row.rf}x{row.rf} (image is {input_size})"
