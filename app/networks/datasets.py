"""Fashion-MNIST from the official idx files, read straight from the .gz archives.

Reading the four files ourselves avoids torchvision's extraction step, so a
read-only copy works, and gives plain uint8 tensors the rest of the app slices.
"""

from __future__ import annotations

import gzip
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from app.base.errors import DatasetMissingError
from app.base.paths import data_dir

FASHION_TEST = "fashion-test"  # the test set's name in the store of computed results (app.serving.store)
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


@lru_cache(maxsize=4)
def load_fashion_mnist(split: str = "test", root: Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 [N, 28, 28], labels int64 [N]) for split "train" or "test"."""
    folder = Path(root or data_dir()) / "FashionMNIST" / "raw"
    image_file, label_file = (folder / name for name in _FILES[split])
    if not image_file.exists() or not label_file.exists():
        raise DatasetMissingError(
            f"Fashion-MNIST ({split}) is not in {folder}. Run `make data` to copy or download it."
        )
    images = torch.from_numpy(_read_idx(image_file).copy())
    labels = torch.from_numpy(_read_idx(label_file).astype(np.int64))
    return images, labels
