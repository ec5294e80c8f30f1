"""CNN Lens entry point: navigation and the sidebar (model + image picker).

Run with `streamlit run streamlit_app.py` (or `make run`). The sidebar is
built here so its choices persist while the user moves between pages.
"""

from __future__ import annotations

import streamlit as st
from starlette.formparsers import MultiPartParser

from app.models import MODEL_NAMES
from app.samples import sample_bytes, samples
from pages.common import INTAKE

# Uploads must never touch the disk: Starlette spools request bodies over 1 MiB to a
# temporary file; keep them in memory up to the upload cap (+1 MiB for the form).
MultiPartParser.spool_max_size = 21 * 2**20

st.set_page_config(page_title="CNN Lens", page_icon=":material/biotech:", layout="wide")

PAGES = [
    st.Page("pages/prediction.py", title="Prediction & architecture", icon=":material/target:", default=True),
    st.Page("pages/activations.py", title="Activations", icon=":material/grid_view:"),
    st.Page("pages/filters.py", title="Filters", icon=":material/filter_alt:"),
    st.Page("pages/attribution.py", title="Attribution", icon=":material/highlight:"),
    st.Page("pages/occlusion.py", title="Occlusion", icon=":material/select_all:"),
    st.Page("pages/feature_space.py", title="Feature space", icon=":material/scatter_plot:"),
    st.Page("pages/playground.py", title="Layer playground", icon=":material/science:"),
    st.Page("pages/training.py", title="Live training", icon=":material/model_training:"),
]


def _image_picker(model_name: str) -> None:
    """Store the chosen image's bytes in session state (never on disk)."""
    source = st.sidebar.radio("Image", ["Sample", "Upload", "Camera"], horizontal=True, key="image_source")
    data: bytes | None = None
    if source == "Sample":
        options = samples(model_name)
        chosen = st.sidebar.selectbox(
            "Sample image", options, format_func=lambda s: s.caption, key=f"sample_{model_name}"
        )
        data = sample_bytes(chosen) if chosen else None
    elif source == "Upload":
        upload = st.sidebar.file_uploader(
            "Upload an image",
            type=["png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff"],
            help="PNG, JPEG, WebP, BMP, GIF (first frame) or TIFF, up to 20 MB.",
        )
        data = upload.getvalue() if upload else None
    else:
        shot = st.sidebar.camera_input("Take a picture")
        data = shot.getvalue() if shot else None
    st.session_state["image_bytes"] = data


def main() -> None:
    st.sidebar.title(":material/biotech: CNN Lens")
    model_name = st.sidebar.selectbox("Model", list(MODEL_NAMES), format_func=MODEL_NAMES.get, key="model_name")
    _image_picker(model_name)
    if model_name == "fashion_cnn":
        st.sidebar.radio(
            "How to read the image",
            list(INTAKE),
            format_func=INTAKE.get,
            key="fashion_intake",
            help="Fashion-MNIST images are small, light objects on black. A normal photo (dark object on a light "
            "background) must first be converted the way Zalando made the data set.",
        )
    st.sidebar.caption("Images stay in memory for your session only; nothing is saved.")
    st.navigation(PAGES).run()


main()
