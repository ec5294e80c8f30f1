"""Model registry: builds the shipped networks as `LoadedModel`s (app.loaded).

`wrap` is the one way any nn.Module becomes a LoadedModel (the shipped models, a
network trained in the browser): ReLUs are made non-inplace once, there (in-place
ReLUs overwrite the conv outputs the Activations page shows and break gradient
hooks), the module goes to eval mode and channels_last, and the layer table's
output shapes are measured with one forward pass.
"""

from __future__ import annotations

import os
import pickle
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

from app import precision
from app.activations import activations
from app.errors import WeightsUnavailableError
from app.layers import layer_table, with_shapes
from app.loaded import LoadedModel
from app.paths import REPO
from models.fashion_cnn import CLASSES as FASHION_CLASSES
from models.fashion_cnn import MEAN as FASHION_MEAN
from models.fashion_cnn import STD as FASHION_STD
from models.fashion_cnn import FashionCNN

FASHION_WEIGHTS = REPO / "models" / "fashion_cnn.pt"
VGG_ENV = "CNN_LENS_VGG16_WEIGHTS"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

MODEL_NAMES = {"vgg16": "VGG-16 (ImageNet)", "fashion_cnn": "Fashion-MNIST CNN"}


@dataclass(frozen=True)
class InputSpec:
    """What a registry name fixes besides the weights: classes and the input the network expects."""

    labels: tuple[str, ...]
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


def _imagenet_labels() -> tuple[str, ...]:
    return tuple(torchvision.models.VGG16_Weights.IMAGENET1K_V1.meta["categories"])


SPECS = {
    "vgg16": InputSpec(_imagenet_labels(), 224, IMAGENET_MEAN, IMAGENET_STD),
    "fashion_cnn": InputSpec(FASHION_CLASSES, 28, (FASHION_MEAN,), (FASHION_STD,)),
}


def _relu_not_inplace(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False


def _load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        raise WeightsUnavailableError(f"Could not read weights from {path}: {exc}") from exc


def fetch_vgg16_weights(connect_timeout: float = 5.0) -> None:
    """Put torchvision's VGG-16 ImageNet weights (528 MB) into torch's cache, unless already there.

    The server is first reached with a timeout, so a machine without internet (or behind a
    firewall that drops packets) learns so in seconds instead of hanging a page; the download
    itself then runs without one. Raises WeightsUnavailableError with the reason.
    """
    url = torchvision.models.VGG16_Weights.IMAGENET1K_V1.url
    if (Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name).exists():
        return
    host = urlparse(url).hostname or ""
    try:
        socket.create_connection((host, 443), timeout=connect_timeout).close()
        torch.hub.load_state_dict_from_url(url, progress=False, check_hash=True)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError
        raise WeightsUnavailableError(
            "Pretrained VGG-16 weights are unavailable (could not download them: "
            f"{getattr(exc, 'reason', exc)}). Run `make weights` with internet access, "
            f"or set {VGG_ENV}=/path/to/vgg16.pth."
        ) from exc


def _vgg16(weights: str | Path | None) -> tuple[nn.Module, str, bool]:
    if weights == "default" and os.environ.get(VGG_ENV):
        weights = os.environ[VGG_ENV]
    if weights is None:
        return torchvision.models.vgg16(weights=None), "untrained (random initialisation)", False
    if weights == "default":
        fetch_vgg16_weights()
        net = torchvision.models.vgg16(weights=torchvision.models.VGG16_Weights.IMAGENET1K_V1)  # from the cache
        return net, "ImageNet (torchvision IMAGENET1K_V1)", True
    net = torchvision.models.vgg16(weights=None)
    try:
        net.load_state_dict(_load_state_dict(weights))
    except RuntimeError as exc:
        raise WeightsUnavailableError(f"{weights} is not a VGG-16 state dict: {exc}") from exc
    return net, f"file {Path(weights).name}", True


def _fashion(weights: str | Path | None) -> tuple[nn.Module, str, bool]:
    net = FashionCNN()
    if weights is None:
        return net, "untrained (random initialisation)", False
    path = FASHION_WEIGHTS if weights == "default" else Path(weights)
    if not path.exists():
        raise WeightsUnavailableError(f"Fashion-MNIST CNN weights not found at {path}; run `make train`.")
    try:
        net.load_state_dict(_load_state_dict(path))
    except RuntimeError as exc:
        raise WeightsUnavailableError(f"{path} is not a Fashion-MNIST CNN state dict: {exc}") from exc
    return (
        net,
        "trained on Fashion-MNIST (models/fashion_cnn.pt)" if weights == "default" else f"file {path.name}",
        True,
    )


def get_model(name: str, weights: str | Path | None = "default", device: torch.device | None = None) -> LoadedModel:
    """Build a model ready for analysis.

    weights: "default" (torchvision's ImageNet weights / our committed Fashion
    weights; $CNN_LENS_VGG16_WEIGHTS overrides for VGG-16), a state-dict path,
    or None for an untrained network. Raises WeightsUnavailableError.
    """
    builders = {"vgg16": _vgg16, "fashion_cnn": _fashion}
    if name not in builders:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODEL_NAMES)}")
    net, origin, trained = builders[name](weights)
    return wrap(name, net, origin, trained, device=device)


def wrap(
    name: str,
    net: nn.Module,
    origin: str,
    trained: bool,
    title: str | None = None,
    device: torch.device | None = None,
) -> LoadedModel:
    """Any network of a registry architecture as a LoadedModel ready for every analysis.

    name picks the input spec (labels, size, normalisation) from SPECS; origin is the
    human-readable source of the weights. The module is changed in place (eval mode,
    non-inplace ReLUs, channels_last), so pass one that is not training elsewhere.
    """
    spec = SPECS[name]
    device = device or precision.pick_device()
    _relu_not_inplace(net)
    net = net.eval().to(device, memory_format=torch.channels_last)
    model = LoadedModel(
        name,
        title or MODEL_NAMES[name],
        net,
        spec.labels,
        spec.input_size,
        spec.mean,
        spec.std,
        origin,
        trained,
        device,
    )
    model.layers = layer_table(net)
    blank = torch.zeros(1, model.channels, model.input_size, model.input_size)
    shapes = {k: tuple(v.shape[1:]) for k, v in activations(model, blank).items()}
    model.layers = with_shapes(model.layers, shapes)
    return model


def get_model_or_untrained(name: str) -> tuple[LoadedModel, str | None]:
    """The default model, or an untrained one plus the reason, so the app keeps working."""
    try:
        return get_model(name), None
    except WeightsUnavailableError as exc:
        return get_model(name, weights=None), str(exc)
