"""What every page shares: the current selection (model, image, model input).

The sidebar widgets live in streamlit_app.py and store their values in
session state; `selection()` turns them into a validated, cached model input,
so every page sees the same image and no page handles raw uploads itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st
import torch
from PIL import Image

from app import cache
from app.errors import LensError
from app.fashion import fashion_input, looks_like_fashion_mnist
from app.images import image_key, load_image
from app.models import LoadedModel, PreprocessStep
from app.playground import softmax

INTAKE = {
    "auto": "Auto-detect",
    "photo": "Photo: convert to Fashion-MNIST style",
    "dataset": "Already Fashion-MNIST style",
}
# Session-state key through which another page opens "What units look for" on one unit:
# a (model key, layer, channel) tuple, read once by that page.
UNIT_LINK = "units_link"


@dataclass(frozen=True)
class Selection:
    model_name: str
    model: LoadedModel
    image: Image.Image
    steps: list[PreprocessStep]
    x: torch.Tensor
    input_key: str  # hash of image bytes + model + intake: the cache key of every analysis
    intake: str = ""  # Fashion model only: "photo" or "dataset"

    def analysis(self, func: str, progress=None, **params):
        return cache.analysis(func, self.model_name, self.input_key, self.x, progress=progress, **params)

    def logits(self):
        return cache.logits(self.model_name, self.input_key, self.x)

    def probabilities(self) -> np.ndarray:
        """Softmax of the cached logits: what every page labels classes with."""
        return softmax(self.logits())


@st.cache_data(max_entries=64, ttl=3600, show_spinner=False)
def _decode(data: bytes) -> Image.Image:
    return load_image(data)


def _session_network(name: str) -> tuple[str, LoadedModel] | None:
    """The network this user trained on the Live training page, if they chose to use it."""
    net = st.session_state.get("session_model") if name == "fashion_cnn" else None
    if net is None:
        return None
    key = st.session_state.get("session_model_key")
    if key is None or cache.session_model(key) is not net:
        key = cache.register_session_model(net)
        st.session_state["session_model_key"] = key
    st.info(f"Showing **{net.title}** ({net.weights}). Go back to the shipped one on the Live training page.")
    return key, net


def current_model() -> tuple[str, LoadedModel]:
    """(cache key, model): the sidebar's model, or the user's own trained network."""
    name = st.session_state.get("model_name", "vgg16")
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
    data: bytes | None = st.session_state.get("image_bytes")
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
            intake = st.session_state.get("fashion_intake", "auto")
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


def model_input_rgb(sel: Selection) -> Image.Image:
    """The picture the network actually sees (after resize/crop), for overlays."""
    return sel.steps[-1].image.convert("RGB")


def show_lens_error(exc: LensError) -> None:
    st.error(str(exc), icon=":material/error:")
