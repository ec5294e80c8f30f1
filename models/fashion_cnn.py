"""The small Fashion-MNIST CNN that CNN Lens ships with trained weights.

Two VGG-style blocks (conv-BN-ReLU twice, then 2x2 max-pool) and a small fully
connected head. It is deliberately plain so every layer is worth looking at on the
Activations and Filters pages: 28x28 -> 14x14 -> 7x7 feature maps, then 10 scores.
"""

from __future__ import annotations

import torch
from torch import nn

CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

# Pixel statistics of the Fashion-MNIST training set (0-1 scale).
MEAN = 0.2860
STD = 0.3530


def normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8 grey images [N, 28, 28] (the data set's own tensors) -> network input [N, 1, 28, 28]."""
    return (images.float()[:, None] / 255 - MEAN) / STD


def _block(c_in: int, c_out: int) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
        nn.MaxPool2d(2),
    ]


class FashionCNN(nn.Module):
    """Input: [N, 1, 28, 28] normalised with MEAN/STD. Output: [N, 10] logits."""

    def __init__(self, width: int = 32, dropout: float = 0.3) -> None:
        super().__init__()
        self.features = nn.Sequential(*_block(1, width), *_block(width, 2 * width))
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(2 * width * 7 * 7, 128),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(128, len(CLASSES)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
