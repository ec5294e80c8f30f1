"""What every page shares: the current selection (model, image, model input).

The sidebar widgets live in streamlit_app.py and store their values in
session state; `selection()` turns them into a validated, cached model input,
so every page sees the same image and no page handles raw uploads itself.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np
import streamlit as st
import torch
from PIL import Image

from app.errors import LensError
from app.fashion import fashion_input, looks_like_fashion_mnist
from app.images import image_key, load_image
from app.loaded import LoadedModel, PreprocessStep
from app.numeric import softmax
from app.progress import Progress
from pages import cache

# Session-state keys that more than one file reads or writes (the sidebar in
# streamlit_app.py, this module, the Live training page): one name each.
MODEL_CHOICE = "model_name"  # the sidebar's model: a shipped model's registry name
IMAGE_SOURCE = "image_source"  # the sidebar's image source: Sample, Upload or Camera
IMAGE_BYTES = "image_bytes"  # the chosen image's bytes (memory only)
FASHION_INTAKE = "fashion_intake"  # how to read an image for the Fashion model (INTAKE's keys)
SESSION_MODEL = "session_model"  # a network trained on the Live training page, if the user chose it
SESSION_MODEL_KEY = "session_model_key"  # its key in pages.cache
UNIT_LINK = "units_link"  # (model key, layer, channel) that opens "What units look for" on one unit; read once

INTAKE = {
    "auto": "Auto-detect",
    "photo": "Photo: convert to Fashion-MNIST style",
    "dataset": "Already Fashion-MNIST style",
}


@dataclass(frozen=True)
class Selection:
    model_key: str  # a shipped model's name, or the key of a network trained in this session
    model: LoadedModel
    image: Image.Image
    steps: list[PreprocessStep]
    x: torch.Tensor
    input_key: str  # hash of image bytes + model + intake: the cache key of every analysis
    intake: str = ""  # Fashion model only: "photo" or "dataset"

    def analysis(self, func: Callable[..., Any], progress: Progress | None = None, **params: Hashable) -> Any:
        """`func(model, x, **params)` for this image, computed once and shared (pages.cache.analysis)."""
        return cache.analysis(func, self.model_key, self.input_key, self.x, progress=progress, **params)

    def logits(self) -> np.ndarray:
        return cache.logits(self.model_key, self.input_key, self.x)

    def probabilities(self) -> np.ndarray:
        """Softmax of the cached logits: what every page labels classes with."""
        return softmax(self.logits())


@st.cache_data(max_entries=64, ttl=3600, show_spinner=False)
def _decode(data: bytes) -> Image.Image:
    return load_image(data)


def _session_network(name: str) -> tuple[str, LoadedModel] | None:
    """The network this user trained on the Live training page, if they chose to use it."""
    net = st.session_state.get(SESSION_MODEL) if name == "fashion_cnn" else None
    if net is None:
        return None
    key = st.session_state.get(SESSION_MODEL_KEY)
    if key is None or cache.session_model(key) is not net:
        key = cache.register_session_model(net)
        st.session_state[SESSION_MODEL_KEY] = key
    st.info(f"Showing **{net.title}** ({net.weights}). Go back to the shipped one on the Live training page.")
    return key, net


def current_model() -> tuple[str, LoadedModel]:
    """(cache key, model): the sidebar's model, or the user's own trained network."""
    name = st.session_state.get(MODEL_CHOICE, "vgg16")
    own = _session_network(name)
    if own is not None:
        return own
    loaded, warning = cache.model(name)
    if warning:
        st.warning(
            f"**Pretrained weights unavailable — showing an untrained {loaded.title}.** {warning}",
            icon=":material/warning:",
        )
    return name, loaded


def selection() -> Selection:
    """The current model and image; stops the page with a hint when no image is chosen."""
    name, model = current_model()
    data: bytes | None = st.session_state.get(IMAGE_BYTES)
    if not data:
        st.info(
            "Choose an image in the sidebar: a sample, your own upload, or a camera shot.", icon=":material/arrow_back:"
        )
        st.stop()
    try:
        image = _decode(data)
    except LensError as exc:
        st.error(str(exc), icon=":material/error:")
        st.stop()
    intake = ""
    try:
        if name == "fashion_cnn":
            intake = st.session_state.get(FASHION_INTAKE, "auto")
            if intake == "auto":
                intake = "dataset" if looks_like_fashion_mnist(image) else "photo"
            steps, x = fashion_input(model, image, intake)
        else:
            steps = model.preprocess_steps(image)
            x = model.to_tensor(steps[-1].image)
    except LensError as exc:
        st.error(str(exc), icon=":material/error:")
        st.stop()
    return Selection(name, model, image, steps, x, f"{image_key(data)}:{name}:{intake}", intake)


def page(title: str, intro: str) -> Selection:
    """How an analysis page opens: the checked selection, the page's title and a line on what it shows."""
    sel = selection()
    st.title(title)
    st.caption(intro)
    return sel


def class_picker(sel: Selection, label: str, key: str) -> int:
    """A searchable class choice that starts at the network's prediction, with every class's probability."""
    probs = sel.probabilities()
    predicted = int(np.argmax(probs))
    labels = sel.model.labels
    return st.selectbox(
        label,
        range(len(labels)),
        index=predicted,
        format_func=lambda i: f"{labels[i]} ({probs[i]:.1%})" + (" · predicted" if i == predicted else ""),
        key=key,
        help="Type to search. Defaults to the network's prediction.",
    )


def download_pair(stem: str, picture: np.ndarray, values: np.ndarray, key: str) -> None:
    """Two buttons: the picture as shown (PNG) and the raw values (.npy) behind it."""
    stem = stem.replace(" ", "_").replace("/", "-")
    left, right = st.columns(2)
    left.download_button("PNG", png_bytes(picture), f"{stem}.png", "image/png", key=f"{key}_png", on_click="ignore")
    right.download_button(
        ".npy", npy_bytes(values), f"{stem}.npy", "application/octet-stream", key=f"{key}_npy", on_click="ignore"
    )


def png_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def npy_bytes(values: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, values)
    return buf.getvalue()


def model_input_rgb(sel: Selection) -> Image.Image:
    """The picture the network actually sees (after resize/crop), for overlays."""
    return sel.steps[-1].image.convert("RGB")


def show_lens_error(exc: LensError) -> None:
    st.error(str(exc), icon=":material/error:")
