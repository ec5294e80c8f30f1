"""What every analysis is handed: a network with its pre-processing, labels and layer table.

A LoadedModel bundles what every analysis needs (eval-mode module, the exact
pre-processing, labels, layer table) so pages and notebooks never rebuild it. It
lives apart from the registry (app.networks.models) so that analyses can name the type
without importing the code that builds models.

Thread-safety rule: the module is shared by all Streamlit sessions. Forward passes
run side by side under `app.serving.sharing.forward()` (fx tracing waits for them); code that
puts hooks on the module, and gradient passes, also hold `model.lock`.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision.transforms import v2 as T

from app.base.numeric import softmax
from app.networks.layers import LayerInfo
from app.serving import precision as prec
from app.serving import sharing


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
    # The data set whose pixel statistics mean and std are, or None where they are fixed constants the
    # network was trained with (EfficientNet-Lite: (p - 127) / 128): pages must not call those statistics.
    norm_data: str | None = None
    layers: list[LayerInfo] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    _derived: dict[Hashable, Any] = field(default_factory=dict, init=False, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (for a worker process, app.serving.worker): the network and its description, not
        the lock or the derived graphs, which the copy makes afresh. Pickle it under `lock`, so that
        no other analysis's temporary hook is on the module."""
        return {k: v for k, v in self.__dict__.items() if k not in ("lock", "_derived")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, lock=threading.RLock(), _derived={})

    def cached(self, key: Hashable, build: Callable[[], Any]) -> Any:
        """What analyses derive from this network (fx graphs, layer chains), built once per key.

        The one cache of derived objects for a model, so there is one lock order:
        `build` runs under `self.lock` (re-entrant), and may itself ask for other
        keys (a guided graph asks for the traced extractor). Derived objects hold no
        per-call state, so sessions share them.
        """
        built = self._derived.get(key)  # once built, no lock: passes must not queue behind analyses
        if built is not None:
            return built
        with self.lock:
            if key not in self._derived:
                self._derived[key] = build()
            return self._derived[key]

    @contextlib.contextmanager
    def gradient_pass(self) -> Iterator[None]:
        """Held while gradients flow through the shared module (attribution, dreams, the overview).

        Under the model's lock (the one lock order: see `cached`) and `sharing.forward()` (no fx
        trace may overlap it), with gradients on and autocast off, even inside a caller's
        inference_mode or autocast: the maps and steps are meant to be exact fp32."""
        with (
            self.lock,
            sharing.forward(),
            torch.inference_mode(False),
            torch.enable_grad(),
            torch.autocast(self.device.type, enabled=False),
        ):
            yield

    def digest(self) -> str:
        """SHA-256 of the weights (every state-dict tensor, in order), hashed once per model.

        Stored results are keyed by it, so it is asked for on every lookup; rehashing VGG-16's
        528 MB each time was wasted work, since a LoadedModel's weights never change (training
        builds a new one)."""
        return self.cached("digest", self._hash_weights)

    def _hash_weights(self) -> str:
        h = hashlib.sha256()
        for name, t in self.module.state_dict().items():
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    def layer(self, name: str) -> LayerInfo:
        for row in self.layers:
            if row.name == name:
                return row
        raise KeyError(f"{self.name} has no layer {name!r}")

    def normalisation_origin(self) -> str:
        """What mean and std are, in words a student can check: a data set's statistics or fixed constants."""
        if self.norm_data:
            return f"the pixel mean and standard deviation of the {self.norm_data} training images"
        per_channel = [f"(p − {m * 255:.0f}) / {s * 255:.0f}" for m, s in zip(self.mean, self.std, strict=True)]
        scaled = per_channel[0] if len(set(per_channel)) == 1 else "; ".join(per_channel) + " (one per channel)"
        return (
            f"fixed constants, not statistics of any data set: this network was trained on pixels p (0–255) "
            f"scaled as {scaled}"
        )

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
        return self.normalise(T.functional.pil_to_tensor(img).unsqueeze(0))

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        """0-255 pixels [N, C, H, W] (any dtype) -> the network's input, (pixel/255 - mean) / std."""
        mean = torch.tensor(self.mean).view(-1, 1, 1)
        std = torch.tensor(self.std).view(-1, 1, 1)
        return (pixels.float() / 255 - mean) / std

    def preprocess(self, img: Image.Image) -> torch.Tensor:
        return self.to_tensor(self.preprocess_steps(img)[-1].image)

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        """Back to 0-1 pixels ([C, H, W]), for showing the model's input."""
        mean = torch.tensor(self.mean, device=x.device).view(-1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(-1, 1, 1)
        return (x.squeeze(0) * std + mean).clamp(0, 1)

    def logits(self, x: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
        """Logits [N, classes] in fp32; runs beside other forward passes (app.serving.sharing).

        Predictions default to fp32: they are shown as probabilities, and bf16
        moved VGG-16's top-5 probabilities by up to 3 % (benchmarks/forward.py),
        more than the 1 % we accept. Bulk analyses use `self.precision` instead.
        """
        with sharing.forward(), torch.inference_mode(), prec.autocast(self.device, precision):
            return self.module(x.to(self.device)).float().cpu()

    def top_k(self, x: torch.Tensor, k: int = 5) -> list[tuple[str, float]]:
        probs = softmax(self.logits(x)[0].numpy())
        order = np.argsort(-probs, kind="stable")[: min(k, len(self.labels))]
        return [(self.labels[i], float(probs[i])) for i in order]
