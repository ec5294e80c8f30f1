"""Model registry: one `LoadedModel` per network, shared by every session.

A LoadedModel bundles what every analysis needs (eval-mode module, the exact
pre-processing, labels, layer table) so pages and notebooks never rebuild it.
ReLUs are made non-inplace once, at load: in-place ReLUs overwrite the conv
outputs the Activations page shows and break gradient hooks.

Thread-safety rule: the module is shared by all Streamlit sessions, so any code
that runs it holds `model.lock` for the whole forward/backward, and code that
registers hooks removes them before releasing it.
"""

from __future__ import annotations

import os
import pickle
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from PIL import Image
from torch import nn
from torchvision.transforms import v2 as T

from app import precision
from app.errors import WeightsUnavailableError
from app.layers import LayerInfo, layer_table, with_shapes
from models.fashion_cnn import CLASSES as FASHION_CLASSES
from models.fashion_cnn import MEAN as FASHION_MEAN
from models.fashion_cnn import STD as FASHION_STD
from models.fashion_cnn import FashionCNN

REPO = Path(__file__).resolve().parent.parent
FASHION_WEIGHTS = REPO / "models" / "fashion_cnn.pt"
VGG_ENV = "CNN_LENS_VGG16_WEIGHTS"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

MODEL_NAMES = {"vgg16": "VGG-16 (ImageNet)", "fashion_cnn": "Fashion-MNIST CNN"}


@dataclass(frozen=True)
class PreprocessStep:
    name: str
    detail: str
    image: Image.Image


@dataclass(eq=False)
class LoadedModel:
    name: str
    title: str
    module: nn.Module
    labels: tuple[str, ...]
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    weights: str  # human-readable origin of the weights
    trained: bool
    device: torch.device
    precision: str = "auto"  # bulk analyses (features, occlusion): bf16 where the hardware has it
    layers: list[LayerInfo] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    extractor: nn.Module | None = None  # fx graph returning every layer's output

    def layer(self, name: str) -> LayerInfo:
        for row in self.layers:
            if row.name == name:
                return row
        raise KeyError(f"{self.name} has no layer {name!r}")

    @property
    def channels(self) -> int:
        return len(self.mean)

    def preprocess_steps(self, img: Image.Image) -> list[PreprocessStep]:
        """Every step from the user's RGB image to what the network sees."""
        s = self.input_size
        if self.channels == 3:
            resized = T.functional.resize(img, 256 if s == 224 else s)
            cropped = T.functional.center_crop(resized, [s, s])
            return [
                PreprocessStep("original", f"{img.width}x{img.height} RGB", img),
                PreprocessStep(
                    "resize",
                    f"shorter side to {min(resized.size)} px",
                    resized,
                ),
                PreprocessStep("centre crop", f"{s}x{s}", cropped),
            ]
        grey = img.convert("L")
        resized = grey.resize((s, s), Image.Resampling.BILINEAR)
        return [
            PreprocessStep("original", f"{img.width}x{img.height} RGB", img),
            PreprocessStep("greyscale", "8-bit grey", grey),
            PreprocessStep("resize", f"{s}x{s}", resized),
        ]

    def to_tensor(self, img: Image.Image) -> torch.Tensor:
        """Normalise the last step's image: [1, C, H, W], (pixel/255 - mean) / std."""
        t = T.functional.pil_to_tensor(img).float().div(255)
        mean = torch.tensor(self.mean).view(-1, 1, 1)
        std = torch.tensor(self.std).view(-1, 1, 1)
        return ((t - mean) / std).unsqueeze(0)

    def preprocess(self, img: Image.Image) -> torch.Tensor:
        return self.to_tensor(self.preprocess_steps(img)[-1].image)

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        """Back to 0-1 pixels ([C, H, W]), for showing the model's input."""
        mean = torch.tensor(self.mean, device=x.device).view(-1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(-1, 1, 1)
        return (x.squeeze(0) * std + mean).clamp(0, 1)

    def logits(self, x: torch.Tensor, precision_: str = "fp32") -> torch.Tensor:
        """Logits [N, classes] in fp32, computed under the model lock.

        Predictions default to fp32: they are shown as probabilities, and bf16
        moved VGG-16's top-5 probabilities by up to 3 % (benchmarks/forward.py),
        more than the 1 % we accept. Bulk analyses use `self.precision` instead.
        """
        with self.lock, torch.inference_mode(), precision.autocast(self.device, precision_):
            return self.module(x.to(self.device)).float().cpu()

    def top_k(self, x: torch.Tensor, k: int = 5) -> list[tuple[str, float]]:
        probs = torch.softmax(self.logits(x)[0], 0)
        values, indices = probs.topk(min(k, len(self.labels)))
        return [(self.labels[i], float(v)) for v, i in zip(values, indices, strict=True)]


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


def _imagenet_labels() -> tuple[str, ...]:
    return tuple(torchvision.models.VGG16_Weights.IMAGENET1K_V1.meta["categories"])


def get_model(name: str, weights: str | Path | None = "default", device: torch.device | None = None) -> LoadedModel:
    """Build a model ready for analysis.

    weights: "default" (torchvision's ImageNet weights / our committed Fashion
    weights; $CNN_LENS_VGG16_WEIGHTS overrides for VGG-16), a state-dict path,
    or None for an untrained network. Raises WeightsUnavailableError.
    """
    device = device or precision.pick_device()
    if name == "vgg16":
        net, origin, trained = _vgg16(weights)
        spec = (_imagenet_labels(), 224, IMAGENET_MEAN, IMAGENET_STD)
    elif name == "fashion_cnn":
        net, origin, trained = _fashion(weights)
        spec = (FASHION_CLASSES, 28, (FASHION_MEAN,), (FASHION_STD,))
    else:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODEL_NAMES)}")
    _relu_not_inplace(net)
    net = net.eval().to(device, memory_format=torch.channels_last)
    labels, size, mean, std = spec
    model = LoadedModel(name, MODEL_NAMES[name], net, labels, size, mean, std, origin, trained, device)
    model.layers = _measured_layers(model)
    return model


def get_model_or_untrained(name: str) -> tuple[LoadedModel, str | None]:
    """The default model, or an untrained one plus the reason, so the app keeps working."""
    try:
        return get_model(name), None
    except WeightsUnavailableError as exc:
        return get_model(name, weights=None), str(exc)


def _measured_layers(model: LoadedModel) -> list[LayerInfo]:
    from app.activations import activations  # activations needs LoadedModel

    rows = layer_table(model.module)
    model.layers = rows
    blank = torch.zeros(1, model.channels, model.input_size, model.input_size)
    shapes = {k: tuple(v.shape[1:]) for k, v in activations(model, blank).items()}
    return with_shapes(rows, shapes)
