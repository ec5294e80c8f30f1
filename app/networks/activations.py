"""Every layer's output from one forward pass, without touching the shared module.

The network is traced (app.networks.layers.trace) into a separate fx GraphModule that
returns the intermediate tensors directly, so no hook is ever registered on the
module other sessions are using.

Tracing must happen as rarely as possible: torch.fx patches `nn.Module.__call__`
for the whole process while it traces, so a forward pass running in another
thread at that moment would be caught by the tracer. So each architecture is
traced once (at model load), and every other graph (truncated copies for
features, guided copies for attribution, networks of the same structure trained
in a session) is derived from a copy of that trace.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import fx, nn

from app.networks.layers import trace
from app.networks.loaded import LoadedModel
from app.serving import precision as prec
from app.serving import sharing


def extractor(model: LoadedModel) -> fx.GraphModule:
    """The model's graph returning {layer name: output}; built once per model from its structure's trace."""
    return model.cached(
        "extractor", lambda: feature_graph(model.module, {row.graph_node: row.name for row in model.layers})
    )


def feature_graph(module: nn.Module, outputs: dict[str, str]) -> fx.GraphModule:
    """A traced copy of `module` returning {name: output of node} for outputs {node name: name}."""
    graph, qualnames = trace(module)
    nodes = {qualname: node for node, qualname in qualnames.items()}
    missing = sorted(set(outputs) - set(nodes))
    if missing:
        raise KeyError(f"no graph nodes named {missing}")
    output = next(n for n in graph.nodes if n.op == "output")
    output.args = ({name: nodes[node] for node, name in outputs.items()},)
    module = fx.GraphModule(module, graph)
    module.graph.eliminate_dead_code()
    module.recompile()
    return module.eval()


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
