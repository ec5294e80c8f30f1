"""CNN Lens entry point: navigation and the sidebar (model + image picker).

Run with `streamlit run streamlit_app.py` (or `make run`). The sidebar is
built here so its choices persist while the user moves between pages.
"""

from __future__ import annotations

import streamlit as st
from starlette.formparsers import MultiPartParser

from app.base.errors import LensError
from app.networks.collections import collection_folders
from app.networks.models import offered_models
from app.networks.samples import sample_bytes, samples
from pages.common import (
    FASHION_INTAKE,
    IMAGE_BYTES,
    IMAGE_SOURCE,
    INTAKE,
    INTAKE_LABEL,
    MODEL_CHOICE,
    default_model,
    preview,
)

# Uploads must never touch the disk: Starlette spools request bodies over 1 MiB to a
# temporary file; keep them in memory up to the upload cap (+1 MiB for the form).
MultiPartParser.spool_max_size = 21 * 2**20

st.set_page_config(page_title="CNN Lens", page_icon=":material/biotech:", layout="wide")

PAGES = [
    st.Page("pages/prediction.py", title="Prediction & architecture", icon=":material/target:", default=True),
    st.Page("pages/overview.py", title="Network overview", icon=":material/account_tree:"),
    st.Page("pages/activations.py", title="Activations", icon=":material/grid_view:"),
    st.Page("pages/filters.py", title="Filters", icon=":material/filter_alt:"),
    st.Page("pages/attribution.py", title="Attribution", icon=":material/highlight:"),
    st.Page("pages/sanity.py", title="Sanity checks", icon=":material/rule:"),
    st.Page("pages/compare.py", title="Models side by side", icon=":material/compare:"),
    st.Page("pages/occlusion.py", title="Occlusion", icon=":material/select_all:"),
    st.Page("pages/units.py", title="What units look for", icon=":material/image_search:"),
    st.Page("pages/feature_space.py", title="Feature space", icon=":material/scatter_plot:"),
    st.Page("pages/playground.py", title="Layer playground", icon=":material/science:"),
    st.Page("pages/convolution.py", title="Convolution, step by step", icon=":material/animation:"),
    st.Page("pages/training.py", title="Live training", icon=":material/model_training:"),
    st.Page("pages/dreams.py", title="Dreams", icon=":material/auto_awesome:"),
]


# Sidebar widgets whose values must survive moving between pages. Streamlit drops a
# widget's state when a run ends without drawing it (e.g. a run cut short by a page
# switch); assigning each key to itself at the top of every run keeps it.
STICKY_KEYS = (MODEL_CHOICE, IMAGE_SOURCE, FASHION_INTAKE)


def _keep_sidebar_state(names: dict[str, str]) -> None:
    for key in (*STICKY_KEYS, *(f"sample_{name}" for name in names)):
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


def _remember(widget_key: str, store_key: str) -> None:
    """on_change of an uploader/camera: keep the bytes in plain session state, not the widget."""
    file = st.session_state.get(widget_key)
    st.session_state[store_key] = (file.name, file.getvalue()) if file is not None else None


def _image_picker(model_name: str) -> None:
    """Store the chosen image's bytes in session state (never on disk)."""
    source = st.sidebar.radio("Image", ["Sample", "Upload", "Camera"], horizontal=True, key=IMAGE_SOURCE)
    kept: tuple[str, bytes] | None = None
    if source == "Sample":
        options = samples(model_name)
        chosen = st.sidebar.selectbox(
            "Sample image", options, format_func=lambda s: s.caption, key=f"sample_{model_name}"
        )
        kept = (chosen.name, sample_bytes(chosen)) if chosen else None
    elif source == "Upload":
        st.sidebar.file_uploader(
            "Upload an image",
            type=["png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff"],
            help="PNG, JPEG, WebP, BMP, GIF (first frame) or TIFF, up to 20 MB.",
            key="upload_widget",
            on_change=_remember,
            args=("upload_widget", "upload"),
        )
        kept = st.session_state.get("upload")
    else:
        st.sidebar.camera_input(
            "Take a picture", key="camera_widget", on_change=_remember, args=("camera_widget", "camera")
        )
        kept = st.session_state.get("camera")
    if kept and source != "Sample":
        _show_kept(source, kept)
        kept = st.session_state.get(STORE_KEYS[source])  # None when the user chose to forget it
    st.session_state[IMAGE_BYTES] = kept[1] if kept else None


def _model_names() -> dict[str, str]:
    """The models this server offers; a broken config file or an unknown offered name is reported, not fatal."""
    names, problems = offered_models()
    for problem in problems:
        st.sidebar.error(problem, icon=":material/error:")
    return names


def _report_collections() -> None:
    """A broken [collections] table or collections folder is reported as a broken model entry is."""
    try:
        collection_folders()
    except LensError as exc:
        st.sidebar.error(f"The teacher's collections are off: {exc}", icon=":material/error:")


STORE_KEYS = {"Upload": "upload", "Camera": "camera"}
WIDGET_KEYS = {"Upload": "upload_widget", "Camera": "camera_widget"}


def _forget(store_key: str) -> None:
    st.session_state[store_key] = None


def _show_kept(source: str, kept: tuple[str, bytes]) -> None:
    """Show the image in use. The upload box empties itself when the user visits another image
    source, while the bytes are kept; without a picture here the box said "nothing" while the
    pages used the old file."""
    size = len(kept[1])
    amount = f"{size / 1024:.0f} KB" if size >= 1024 else f"{size} bytes"
    if st.session_state.get(WIDGET_KEYS[source]) is not None:
        st.sidebar.caption(f"Using **{kept[0]}** ({amount}).")
        return
    left, right = st.sidebar.columns([1, 2])
    small = preview(kept[1])
    if small is not None:  # a file the pages reject is explained there
        left.image(small, width="stretch")
    right.caption(f"Still using **{kept[0]}** ({amount}), chosen earlier. Add a file above to replace it.")
    right.button("Forget it", key=f"forget_{source}", on_click=_forget, args=(STORE_KEYS[source],))


def main() -> None:
    names = _model_names()
    _report_collections()
    _keep_sidebar_state(names)
    # The navigation is drawn by hand under the title: Streamlit's own sidebar navigation
    # always sits above everything else, which put the page links above the app's name.
    page = st.navigation(PAGES, position="hidden")
    st.sidebar.title(":material/biotech: CNN Lens")
    for p in PAGES:
        st.sidebar.page_link(p)
    st.sidebar.divider()
    if st.session_state.get(MODEL_CHOICE) not in names:
        st.session_state[MODEL_CHOICE] = default_model()
    model_name = st.sidebar.selectbox("Model", list(names), format_func=names.get, key=MODEL_CHOICE)
    _image_picker(model_name)
    if model_name == "fashion_cnn":
        st.sidebar.radio(
            INTAKE_LABEL,
            list(INTAKE),
            format_func=INTAKE.get,
            key=FASHION_INTAKE,
            help="Fashion-MNIST images are small, light objects on black. A normal photo (dark object on a light "
            "background) must first be converted the way Zalando made the data set.",
        )
    st.sidebar.caption("Images stay in memory for your session only; nothing is saved.")
    page.run()


main()
