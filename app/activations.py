"""Every layer's output from one forward pass, without touching the shared module.

torchvision's `create_feature_extractor` traces the network into a separate
fx GraphModule that returns the intermediate tensors directly, so no hook is
ever registered on the module other sessions are using. The graph is built once
per model and reused.
"""

from __future__ import annotations

import torch
from torchvision.models.feature_extraction import create_feature_extractor

from app import precision
from app.models import LoadedModel


def _extractor(model: LoadedModel) -> torch.nn.Module:
    with model.lock:
        if model.extractor is None:
            nodes = {row.path: row.name for row in model.layers}
            model.extractor = create_feature_extractor(model.module, return_nodes=nodes).eval()
        return model.extractor


def activations(model: LoadedModel, x: torch.Tensor, precision_: str = "fp32") -> dict[str, torch.Tensor]:
    """{layer name: output [N, ...] fp32 on CPU} for every row of `model.layers`, in order."""
    graph = _extractor(model)
    with model.lock, torch.inference_mode(), precision.autocast(model.device, precision_):
        out = graph(x.to(model.device, memory_format=torch.channels_last))
    return {name: t.float().contiguous().cpu() for name, t in out.items()}
