"""The layer table: what each layer is, what it outputs and what it can see.

Names follow the VGG paper's convention (conv3_2 = second conv of block 3,
pool3 ends block 3, fc6.. for the classifier) so a teacher can point at the
diagram in the lesson and find the same layer here.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from app.numeric import pair

_KINDS = {
    nn.Conv2d: "conv",
    nn.BatchNorm2d: "bn",
    nn.BatchNorm1d: "bn",
    nn.ReLU: "relu",
    nn.MaxPool2d: "pool",
    nn.AvgPool2d: "pool",
    nn.AdaptiveAvgPool2d: "avgpool",
    nn.Flatten: "flatten",
    nn.Dropout: "dropout",
    nn.Linear: "fc",
}


@dataclass(frozen=True)
class LayerInfo:
    name: str  # display name, e.g. "conv5_3"; the key of activations()
    path: str  # module path inside the network, e.g. "features.28"
    kind: str  # conv, bn, relu, pool, avgpool, flatten, dropout, fc
    type: str  # the torch class name
    params: int
    rf: int | None  # receptive field side in input pixels; None = whole image
    rf_stride: int | None  # input pixels between neighbouring outputs; None after flattening
    out_shape: tuple[int, ...] = ()  # filled in from a real forward pass

    @property
    def spatial(self) -> bool:
        return len(self.out_shape) == 3


def leaf_layers(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """Leaf modules in execution order (true for the Sequential-built models we ship)."""
    return [(p, m) for p, m in module.named_modules() if p and not list(m.children())]


def layer_table(module: nn.Module) -> list[LayerInfo]:
    """Names, kinds, params and receptive fields; shapes come from `with_shapes`."""
    rows: list[LayerInfo] = []
    block, conv_in_block, fc_index = 1, 0, 0
    suffix = ""
    rf: int | None = 1
    jump: int | None = 1
    for path, layer in leaf_layers(module):
        kind = _KINDS.get(type(layer), type(layer).__name__.lower())
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
        if kind in ("conv", "pool") and rf is not None:
            k, s = pair(layer.kernel_size)[0], pair(layer.stride)[0]
            dilation = pair(getattr(layer, "dilation", 1))[0]
            rf += (dilation * (k - 1)) * jump
            jump *= s
        elif kind in ("flatten", "fc"):
            rf, jump = None, None
        params = sum(p.numel() for p in layer.parameters(recurse=False))
        rows.append(LayerInfo(name, path, kind, type(layer).__name__, params, rf, jump))
    return _dedupe(rows)


def _dedupe(rows: list[LayerInfo]) -> list[LayerInfo]:
    """Make names unique (e.g. two dropouts after fc6) by numbering repeats."""
    seen: dict[str, int] = {}
    out = []
    for row in rows:
        n = seen.get(row.name, 0)
        seen[row.name] = n + 1
        out.append(row if n == 0 else LayerInfo(**{**row.__dict__, "name": f"{row.name}_{chr(97 + n)}"}))
    return out


def with_shapes(rows: list[LayerInfo], shapes: dict[str, tuple[int, ...]]) -> list[LayerInfo]:
    """Attach per-sample output shapes (batch dimension dropped)."""
    return [LayerInfo(**{**r.__dict__, "out_shape": tuple(shapes[r.name])}) for r in rows]


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
