"""The whole network at a glance: each stage's most active feature maps, and what feeds a channel.

A stage is a run of layers at one map size: every downsampling starts a new one, so
VGG-16 has six (224 down to 7 px) and EfficientNet-Lite0 five (112 down to 7 px).
Each stage is shown by one layer, its last block output: the last residual addition
when the stage has one (EfficientNet-Lite0, ResNet), else its last activation or pooling
layer. That keeps a 149-layer network to a handful of columns a projector can show.

"What feeds this channel" ranks the channels of the previous stage's layer by
gradient x activation, summed over positions: d(sum of the channel's map) / d(source
unit) x source unit. Through a single convolution this is exactly the sum of weight x
activation over the kernel and the map (the convolution is linear in its input; the
bias is nobody's contribution); through several layers it is the first-order share of
each source channel, the standard linearisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx

from app.networks.activations import activations, derived
from app.networks.loaded import LoadedModel

THUMB = 28  # thumbnails are average-pooled to at most this many cells a side: readable, and a small payload
_SHOWN_KINDS = ("add", "relu", "pool", "conv")  # kinds that can represent a stage (not bn, padding, avgpool)


@dataclass(frozen=True)
class Stage:
    """One map size of the network, shown by one layer's most active channels."""

    layer: str  # the layer shown
    shape: tuple[int, ...]  # its output [C, H, W]
    rf: int | None  # receptive field side in input pixels (None: whole image)
    layers: int  # how many rows of the layer table this stage holds
    additions: int  # residual additions in it
    blocks: tuple[str, ...]  # its blocks by module path (stage3.block2), empty for a plain chain
    channels: tuple[int, ...]  # the most active channels, most active first
    strengths: tuple[float, ...]  # their mean activation
    maps: np.ndarray  # [k, h, w] thumbnails of those channels


@dataclass(frozen=True)
class Overview:
    stages: tuple[Stage, ...]
    top: tuple[tuple[str, float], ...]  # the top classes and their probabilities


def stage_layers(model: LoadedModel) -> list[tuple[str, list[str]]]:
    """[(layer shown, every layer of the stage)] in order: one entry per output map size."""
    groups: list[list] = []
    for row in model.layers:
        if not row.spatial or row.out_shape[1:] == (1, 1):  # global pooling's 1x1 maps show nothing
            continue
        if groups and groups[-1][0].out_shape[1:] == row.out_shape[1:]:
            groups[-1].append(row)
        else:
            groups.append([row])
    stages = []
    for rows in groups:
        eligible = [r for r in rows if r.kind in _SHOWN_KINDS]
        if not eligible:
            continue  # e.g. the one padding layer before EfficientNet-Lite0's first convolution
        adds = [r for r in eligible if r.kind == "add"]
        stages.append(((adds or eligible)[-1].name, [r.name for r in rows]))
    return stages


def _block(path: str) -> str | None:
    """ "stage3.block2" for "stage3.block2.depthwise_conv"; None for a plain chain's "features.3"."""
    parts = path.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 else None


def _thumbnails(maps: torch.Tensor) -> np.ndarray:
    """[k, H, W] -> [k, h, w] with h, w <= THUMB (average pooling keeps every unit's share)."""
    h, w = maps.shape[-2:]
    if max(h, w) <= THUMB:
        return maps.numpy()
    return F.adaptive_avg_pool2d(maps.unsqueeze(0), (min(h, THUMB), min(w, THUMB)))[0].numpy()


def overview(model: LoadedModel, x: torch.Tensor, per_stage: int = 4) -> Overview:
    """Every stage's `per_stage` most active channels (by mean activation) and the top-5 classes."""
    outputs = activations(model, x)
    stages = []
    for shown, names in stage_layers(model):
        maps = outputs[shown][0]
        strength = maps.mean(dim=(1, 2))
        order = torch.argsort(strength, descending=True, stable=True)[:per_stage]
        rows = [model.layer(name) for name in names]
        blocks = tuple(dict.fromkeys(b for r in rows if (b := _block(r.path)) is not None))
        stages.append(
            Stage(
                shown,
                tuple(maps.shape),
                model.layer(shown).rf,
                len(rows),
                sum(r.kind == "add" for r in rows),
                blocks,
                tuple(int(c) for c in order),
                tuple(float(strength[c]) for c in order),
                _thumbnails(maps[order]),
            )
        )
    return Overview(tuple(stages), tuple(model.top_k(x, 5)))


def _pair_graph(model: LoadedModel, source: str, target: str) -> fx.GraphModule:
    """A private graph returning {source: its output, target: its output}; built once per pair."""

    def edit(graph: fx.Graph) -> None:
        output = next(n for n in graph.nodes if n.op == "output")
        outputs = output.args[0]
        output.args = ({source: outputs[source], target: outputs[target]},)

    return model.cached(("overview pair", source, target), lambda: derived(model, edit=edit))


def feeding_channels(model: LoadedModel, x: torch.Tensor, source: str, target: str, channel: int) -> np.ndarray:
    """Each channel of `source`'s contribution to channel `channel` of the later layer `target`, [C_source].

    Gradient x activation summed over positions (see the module docstring): positive feeds
    the channel, negative holds it back. fp32 and exact; runs under the model's lock, as
    every gradient pass on a shared network does.
    """
    graph = _pair_graph(model, source, target)
    with model.gradient_pass():
        leaf = x.detach().to(model.device, torch.float32, memory_format=torch.channels_last).requires_grad_(True)
        out = graph(leaf)
        src = out[source]
        (grad,) = torch.autograd.grad(out[target][:, channel].sum(), [src])
        share = (grad * src).sum(dim=(0, 2, 3))
    return share.detach().float().cpu().numpy()
