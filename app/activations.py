"""Every layer's output from one forward pass, without touching the shared module.

torchvision's `create_feature_extractor` traces the network into a separate fx
GraphModule that returns the intermediate tensors directly, so no hook is ever
registered on the module other sessions are using.

Tracing must happen as rarely as possible: torch.fx patches `nn.Module.__call__`
for the whole process while it traces, so a forward pass running in another
thread at that moment would be caught by the tracer. So each architecture is
traced once (at model load), and every other graph (truncated copies for
features, guided copies for attribution, networks of the same structure trained
in a session) is derived from a copy of that trace.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable

import torch
from torch import fx
from torchvision.models.feature_extraction import create_feature_extractor

from app import precision as prec
from app import sharing
from app.layers import leaf_layers
from app.loaded import LoadedModel

_traces: dict[tuple, fx.Graph] = {}
_trace_lock = threading.Lock()


def _structure(model: LoadedModel) -> tuple:
    """What makes two networks trace to the same graph: class, layer paths and types, names."""
    leaves = tuple((path, type(m).__name__) for path, m in leaf_layers(model.module))
    return (type(model.module).__qualname__, leaves, tuple(r.name for r in model.layers))


def extractor(model: LoadedModel) -> fx.GraphModule:
    """The model's graph returning {layer name: output}; built once per model (lock order: model, trace)."""

    def build() -> fx.GraphModule:
        key = _structure(model)
        with _trace_lock:
            graph = _traces.get(key)
            if graph is None:
                nodes = {row.path: row.name for row in model.layers}
                with sharing.exclusive():  # tracing patches nn.Module.__call__ process-wide
                    traced = create_feature_extractor(model.module, return_nodes=nodes).eval()
                _traces[key] = copy.deepcopy(traced.graph)
                return traced
        return fx.GraphModule(model.module, copy.deepcopy(graph)).eval()

    return model.cached("extractor", build)


def graph_copy(model: LoadedModel) -> fx.Graph:
    """A private, editable copy of the model's graph (outputs: every layer by name)."""
    return copy.deepcopy(extractor(model).graph)


def derived(
    model: LoadedModel, layer: str | None = None, edit: Callable[[fx.Graph], None] | None = None
) -> fx.GraphModule:
    """A private GraphModule made from a copy of the load-time trace, sharing the model's layers.

    layer: return only {layer: output} and drop all work after it.
    edit: changes the copied graph in place before it is compiled (e.g. swapping ReLUs).
    """
    graph = graph_copy(model)
    if layer is not None:
        output = next(n for n in graph.nodes if n.op == "output")
        outputs = output.args[0]
        if layer not in outputs:
            raise KeyError(f"{model.name} has no layer {layer!r}")
        output.args = ({layer: outputs[layer]},)
    if edit is not None:
        edit(graph)
    module = fx.GraphModule(model.module, graph)
    module.graph.eliminate_dead_code()
    module.recompile()
    return module.eval()


def truncated(model: LoadedModel, layer: str) -> fx.GraphModule:
    """A graph that stops at `layer` and returns {layer: output}: no work after it (built once per layer)."""
    return model.cached(("truncated", layer), lambda: derived(model, layer))


def activations(model: LoadedModel, x: torch.Tensor, precision: str = "fp32") -> dict[str, torch.Tensor]:
    """{layer name: output [N, ...] fp32 on CPU} for every row of `model.layers`, in order."""
    graph = extractor(model)
    with sharing.forward(), torch.inference_mode(), prec.autocast(model.device, precision):
        out = graph(x.to(model.device, memory_format=torch.channels_last))
    return {name: t.float().contiguous().cpu() for name, t in out.items()}
