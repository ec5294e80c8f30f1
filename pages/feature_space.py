"""Feature space: where the network puts images, and which images it finds alike."""

from __future__ import annotations

import numpy as np
import streamlit as st
from PIL import Image

from app.analyses import embedding as E
from app.base.errors import LensError
from app.networks.datasets import load_fashion_mnist
from app.networks.images import Collection, collection_image
from app.pictures import figures
from pages import cache, common

FASHION_SET = "Fashion-MNIST test set (10,000 images)"
OWN_SET = "My own collection (upload)"
METRICS = {"l2": "L2 (Euclidean; ranks like MSE)", "l1": "L1 (sum of absolute differences)", "cosine": "cosine"}


def _fashion_map(model_key: str, method: str, perplexity: float, progress) -> tuple:
    """The stored 10k map (computed once per weights, on disk) plus what the page shows with it."""

    def compute() -> tuple:
        model = cache.model(model_key)[0]
        params = E.map_params(method, perplexity)
        shipped = "@" not in model_key  # a network trained in this session is not kept on disk
        fmap, labels, feats = E.fashion_test_map(model, method, params, progress=progress, keep=shipped)
        images, _ = load_fashion_mnist("test")
        return fmap, labels, feats, E.predict(model, feats), E.pixels(model, images), images.numpy()

    return cache.shared(("fashion", model_key, method, perplexity), compute)


def _collection_features(model_key: str, collection: Collection, progress, keep_as: str | None) -> tuple:
    def compute() -> tuple:
        return E.kept_collection_vectors(cache.model(model_key)[0], collection.images, keep_as, progress)

    return cache.shared(("features", model_key, collection.key), compute)


def _query_features(model_key: str, image_key: str, data: bytes) -> tuple:
    """The user's image as if it were one more member of the collection (same pixels, same computation),
    so its distances are the ones its copy in the collection would have."""

    def compute() -> tuple:
        return E.collection_vectors(cache.model(model_key)[0], [collection_image(data)])

    return cache.shared(("query features", model_key, image_key), compute)


def _member(collection: Collection, image_key: str, data: bytes) -> int | None:
    """The collection's row holding the user's image (same file or same pixels), found once per pair."""
    return cache.shared(("member", collection.key, image_key), lambda: collection.find(data))


def _collection_map(
    model_key: str, key: str, method: str, perplexity: float, feats: np.ndarray, progress, keep_as: str | None
) -> E.Map:
    def compute() -> E.Map:
        return E.collection_map(cache.model(model_key)[0], feats, method, perplexity, progress, keep_as)

    return cache.shared(("map", model_key, key, method, perplexity), compute)


def _place(map_key: str, input_key: str, fmap: E.Map, feats: np.ndarray) -> np.ndarray:
    return cache.shared(("place", map_key, input_key), lambda: fmap.transform(feats)[0])


def _thumb(item) -> Image.Image:
    if isinstance(item, np.ndarray):  # a 28x28 Fashion-MNIST image: enlarge without blurring
        return Image.fromarray(item).resize((84, 84), Image.Resampling.NEAREST)
    small = item.copy()
    small.thumbnail((160, 160))
    return small


def _neighbours(title: str, idx: np.ndarray, dist: np.ndarray, thumbs, groups: list[str], per_row: int = 4) -> None:
    st.markdown(f"**{title}**")
    for start in range(0, len(idx), per_row):
        cols = st.columns(per_row)
        for col, i, d in zip(cols, idx[start : start + per_row], dist[start : start + per_row], strict=False):
            col.image(_thumb(thumbs[i]), caption=f"{groups[i]} · d={d:.3g}", width="stretch")


sel = common.selection()
model = sel.model
st.title("Feature space")
st.caption(
    "Just before its last layer, the network describes every image by one long list of numbers: "
    f"{model.layer(E.penultimate_layer(model)).out_shape[0]} of them here. Images it considers alike get similar "
    "lists. A map squeezes those lists onto a page so that close lists land close together, and the nearest "
    "neighbours show which images the network finds most like yours."
)

teacher = common.teacher_sources(model)
sources = [FASHION_SET, OWN_SET] if sel.model.name == "fashion_cnn" else [*teacher, OWN_SET]
left, mid, right = st.columns([3, 2, 2])
source = left.radio("Data set", sources, key=f"fs_source_{sel.model_key}", horizontal=True)
method = mid.radio("Map", ["tsne", "pca"], format_func={"tsne": "t-SNE", "pca": "PCA"}.get, key="fs_method")
perplexity = E.DEFAULT_PERPLEXITY
if method == "tsne":
    perplexity = float(
        right.select_slider(
            "Perplexity",
            E.PERPLEXITIES,
            value=int(E.DEFAULT_PERPLEXITY),
            key="fs_perplexity",
            help="Roughly how many neighbours each point tries to stay close to: small values show fine "
            "clusters, large values the overall layout.",
        )
    )

try:
    if source == FASHION_SET:
        params = E.map_params(method, perplexity)
        remove_cancel = None
        if not cache.has_shared(("fashion", sel.model_key, method, perplexity)) and not E.is_stored(
            model, method, params
        ):
            n = len(load_fashion_mnist("test")[1])
            common.confirm_long_run(
                E.estimate_seconds(n, method),
                f"A new {'t-SNE' if method == 'tsne' else 'PCA'} map of the {n:,} test images"
                + (f" at perplexity {perplexity:g}" if method == "tsne" else ""),
                "Compute the map",
                key="fs_start",
            )
            remove_cancel = common.cancel_button("fs_cancel")
        progress, done = common.progress_bar("Computing the map of the 10,000 test images (first time only)")
        fmap, labels, feats, preds, pix, thumbs = _fashion_map(sel.model_key, method, perplexity, progress)
        done()
        if remove_cancel is not None:
            remove_cancel()
        groups = [model.labels[i] for i in labels]
        label_kind = "true label"
        hover = [f"test image #{i}" for i in range(len(labels))]
        data_key = f"fashion:{sel.model_key}:{model.digest()}"
    else:
        if source in teacher:
            loaded = common.teacher_collection(teacher[source])
            collection, keep_as = loaded.collection, loaded.store_name
        else:
            collection, keep_as = (
                common.collection_upload(
                    "fs_upload",
                    help="Put the images of each category in its own folder inside the .zip (cats/…, dogs/…) and "
                    "the map is coloured by those folders; otherwise by the network's prediction. Nothing is stored.",
                    empty="Upload at least two images, or a .zip of a class's photos, to map them.",
                ),
                None,
            )
        progress, done = common.progress_bar(f"Feature vectors of {len(collection.items)} images")
        feats, preds, pix = _collection_features(sel.model_key, collection, progress, keep_as)
        done()
        progress, done = common.progress_bar("Arranging the map")
        fmap = _collection_map(sel.model_key, collection.key, method, perplexity, feats, progress, keep_as)
        done()
        folder_labels = E.labels_from_names(collection.names)
        label_kind = "folder" if folder_labels else "predicted class"
        groups = folder_labels or [model.labels[i] for i in preds]
        thumbs = collection.images
        hover = collection.names
        data_key = f"{sel.model_key}:{collection.key}"
except LensError as exc:
    common.show_lens_error(exc)
    st.stop()

map_key = f"{data_key}:{method}:{perplexity}"
row = _member(collection, sel.image_key, st.session_state[common.IMAGE_BYTES]) if source != FASHION_SET else None
if row is not None:  # the same image is in the collection (by content): its own row, its own neighbour at 0
    mine, mine_pixels, you = feats[row : row + 1], pix[row : row + 1], fmap.coords[row]
elif source != FASHION_SET:  # prepared exactly as the collection's images, not as the other pages prepare it
    mine, _, mine_pixels = _query_features(sel.model_key, sel.image_key, st.session_state[common.IMAGE_BYTES])
    you = _place(map_key, sel.image_key, fmap, mine)
else:
    mine = sel.analysis(E.features)
    mine_pixels = sel.analysis(E.pixels)
    you = _place(map_key, sel.input_key, fmap, mine)

if method == "pca":
    a, b = fmap.explained_variance_ratio
    title = f"PCA: the two axes keep {a:.1%} + {b:.1%} = {a + b:.1%} of the spread"
else:
    used = fmap.params["perplexity"]
    capped = (
        f": {perplexity:g} needs {3 * perplexity + 1:.0f} images or more, {len(fmap.coords)} allow at most {used:.3g}"
        if used < perplexity
        else ""
    )
    # the capped note makes the title too long for a 1024 px screen's column: two lines then
    title = f"t-SNE (perplexity {used:.3g}{capped}),{'<br>' if capped else ' '}coloured by {label_kind}"
event = st.plotly_chart(
    figures.scatter_map(fmap.coords, groups, hover, you, title),
    width="stretch",
    on_select="rerun",
    selection_mode="points",
    key=f"fs_map_{map_key}",
)
st.caption(
    "Hover a point for its label and number; click one to see it below; click legend entries to hide classes. "
    + (
        "PCA is a linear projection: distances along the axes are real, but most of the spread is not shown."
        if method == "pca"
        else "t-SNE keeps neighbours together but not distances: the size of a cluster and the gaps between "
        "clusters mean little. "
        + (
            "Your image (★) is part of this collection (the same picture, found by its content), so it sits "
            "where the map put it."
            if row is not None
            else "Your image (★) was placed into the finished map, not used to build it."
        )
    )
    + (
        " Your image is prepared exactly as the collection's images are (same size, same computation), so its "
        "distances are the ones it would have as a member of the collection."
        if source != FASHION_SET and row is None
        else ""
    )
)

points = [p for p in (event["selection"]["points"] if event else []) if "customdata" in p]
if points:
    picked = points[0]["customdata"]
    picked = int(picked[0] if isinstance(picked, list) else picked)
    c1, c2 = st.columns([1, 3])
    c1.image(_thumb(thumbs[picked]), width="stretch")
    c2.markdown(
        f"**{hover[picked]}** · {label_kind}: **{groups[picked]}** · "
        f"the network predicts: **{model.labels[preds[picked]]}**"
    )

st.subheader("Nearest neighbours of your image")
c1, c2 = st.columns(2)
k = c1.slider("How many", 1, 24, 8, key="fs_k")
metric = c2.selectbox("Distance", list(METRICS), format_func=METRICS.get, key="fs_metric")
f_idx, f_dist, p_idx, p_dist = cache.shared(
    ("neighbours", data_key, sel.input_key, k, metric),
    lambda: (*E.nearest(mine[0], feats, k, metric), *E.nearest(mine_pixels[0], pix, k, metric)),
)
# One above the other, four to a row: side by side, a 1024 px projector gave 55 px thumbnails whose
# captions broke over three lines.
_neighbours("In the network's feature space", f_idx, f_dist, thumbs, groups)
_neighbours("In raw pixel space", p_idx, p_dist, thumbs, groups)
st.caption(
    "Feature space: the images whose feature vectors are closest to your image's. Pixel space: the images whose "
    "pixels are closest. Pixel neighbours share brightness and outline; feature neighbours share what the network "
    "learned to care about, often the class even when the pixels differ."
    + (f" Pixels of photos are compared at {E.PIXEL_SIDE}×{E.PIXEL_SIDE}." if model.input_size > E.PIXEL_SIDE else "")
)
