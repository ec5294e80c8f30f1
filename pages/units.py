"""What units look for: each unit's top dataset patches and their projections (Zeiler & Fergus)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch

from app.analyses import attribution
from app.analyses import dataset_examples as D
from app.analyses.embedding import labels_from_names
from app.base.errors import LensError
from app.networks.batches import model_inputs
from app.networks.datasets import load_fashion_mnist
from app.pictures import figures
from pages import cache, common

FASHION_SET = "Fashion-MNIST test set (10,000 images)"
PHOTO_SET = "Bundled photos (200 crops of 10 free photos)"
OWN_SET = "My own collection (upload)"
SIDE = 112  # display size of one patch or projection, in screen pixels
OVERVIEW = 64  # channels per page of the layer overview


@st.cache_resource(show_spinner=False)
def _photos() -> list[D.Photo]:
    return D.bundled_photos()


def _photo_table(model_key: str, key: str, images: list, progress) -> D.TopTable:
    def compute() -> D.TopTable:
        model = cache.model(model_key)[0]
        batches = model_inputs(model, images, 16)
        return D.top_units_table(model, batches, k=min(D.LABEL_TOP, len(images)), progress=progress, total=len(images))

    return cache.shared(("table", model_key, key), compute)


def _data_set(sel: common.Selection) -> tuple[str, D.TopTable, Callable[[list[int]], torch.Tensor], list[str], str]:
    """(data key, table, inputs(indices), label of each image, what labels are) for the chosen data set."""
    model = sel.model
    sources = [FASHION_SET, OWN_SET] if model.name == "fashion_cnn" else [PHOTO_SET, OWN_SET]
    source = st.radio("Data set", sources, key=f"units_source_{sel.model_key}", horizontal=True)
    if source == FASHION_SET:
        progress, done = common.progress_bar("Finding every unit's best test images (first time only)", "images")
        table = cache.fashion_unit_table(sel.model_key, progress)
        done()
        _, labels = load_fashion_mnist("test")
        names = [model.labels[i] for i in labels.tolist()]  # int() of 10,000 tensor elements: 0.1 s a run
        return "fashion", table, lambda idx: D.fashion_inputs(model, idx), names, "true label"
    if source == PHOTO_SET:
        photos = _photos()
        images = [p.image for p in photos]
        progress, done = common.progress_bar("Finding every unit's best photos (first time only)", "images")
        table = _photo_table(sel.model_key, "photos", images, progress)
        done()
        names = labels_from_names([p.name for p in photos]) or []
        return "photos", table, lambda idx: D.photo_inputs(model, [images[i] for i in idx]), names, "photo"
    collection = common.collection_upload(
        "units_upload",
        help="Put the images of each category in its own folder inside the .zip (cats/…, dogs/…) to see which "
        "categories each unit prefers. Nothing is stored.",
        empty="Upload at least two images, or a .zip of a class's photos, to search them.",
    )
    images = collection.images
    progress, done = common.progress_bar(f"Running {len(images)} images through the network", "images")
    table = _photo_table(sel.model_key, collection.key, images, progress)
    done()
    folders = labels_from_names(collection.names)
    names = folders or collection.names
    return (
        collection.key,
        table,
        lambda idx: D.photo_inputs(model, [images[i] for i in idx]),
        names,
        "folder" if folders else "file",
    )


def _pair(model, patch: np.ndarray, projection: np.ndarray) -> bytes:
    """The patch and its projection side by side, each SIDE pixels on its long side, as a PNG (pictures
    are kept encoded, so a rerun neither redraws nor re-encodes them)."""
    proj = attribution.gradient_image(projection, 99)
    pictures = [figures.scaled_picture(D.to_rgb(model, patch), SIDE), figures.scaled_picture(proj, SIDE)]
    return common.png_bytes(figures.side_by_side(pictures))


def _photo_sources(examples: list[D.Example]) -> None:
    """Which of the bundled photos the nine come from, and how many crops of each: a chart of labels would
    only count file names, 20 crops to a photo."""
    photos = _photos()
    counts = D.count_labels([photos[ex.image].name.split("/")[0] for ex in examples])
    st.subheader(f"Which photos the {len(examples)} come from")
    whole = {p.name.split("/")[0]: p.image for p in reversed(photos)}  # each photo's first variant: all of it
    for col, (stem, count) in zip(st.columns(max(len(counts), 5)), counts.items(), strict=False):
        col.image(whole[stem], caption=f"{stem} · {count} of {len(examples)}", width="stretch")
    st.caption(
        f"The bundled set is {len(photos)} crops (whole, zoomed in, mirrored) of {len(whole)} photos, so one "
        "photo can fill several places. A unit whose best crops come from one "
        "photo may be answering to something only that photo has; crops from many photos point to a more "
        "general feature."
    )


def _label_chart(table: D.TopTable, layer: str, channel: int, names: list[str], label_kind: str) -> None:
    """The labels of the unit's best images, where the data set has enough images of each label for it to show
    a preference (D.label_chart_top)."""
    top = D.label_chart_top(names, table.k)
    if top is None:
        st.caption(
            f"No {label_kind} chart: it needs at least two {label_kind}s and "
            f"{2 * D.MIN_LABEL_TOP} images of each, so that one {label_kind} could fill all the places counted."
        )
        return
    counts = D.label_counts(table, layer, channel, names, top)
    st.subheader(f"Which {label_kind}s its {top} best images have")
    st.bar_chart({"images": counts}, horizontal=True)
    st.caption(
        f"Counted: the {top} best of {len(names):,} images, at most half of the smallest {label_kind}'s share, "
        f"so a unit that cares about one {label_kind} can fill every place with it. A unit whose best images "
        "share one label has learned something specific to that category."
    )


sel = common.page(
    "What units look for",
    "A unit is one channel of one layer. To see what it has learned to detect, search a data set for the "
    "images that excite it most, and show each one cut down to the part of the image the unit can see "
    "(its receptive field), next to the unit's projection back to pixels (guided backpropagation from that "
    "one unit at that one place): the picture Zeiler & Fergus (2014) made famous. Early layers answer to "
    "edges and colours, deeper ones to textures, parts and whole objects.",
)
model = sel.model

try:
    data_key, table, inputs, names, label_kind = _data_set(sel)
except LensError as exc:
    common.show_lens_error(exc)
    st.stop()

layers = table.layers
link = st.session_state.pop(common.UNIT_LINK, None)
layer_key = f"units_layer_{sel.model_key}"
if link and link[0] == sel.model_key and link[1] in layers:
    st.session_state[layer_key] = link[1]
if st.session_state.get(layer_key) not in layers:  # first visit: a deep map whose units see part of the image
    st.session_state[layer_key] = D.default_layer(model, layers)
left, right = st.columns([2, 1])
layer = left.selectbox("Layer", layers, key=layer_key)
row = model.layer(layer)
channels = table.channels(layer)
channel_key = f"units_channel_{sel.model_key}_{layer}"
if link and link[0] == sel.model_key and link[1] == layer:
    st.session_state[channel_key] = min(int(link[2]), channels - 1)
channel = int(right.number_input("Channel", 0, channels - 1, key=channel_key))
st.caption(
    f"**{layer}** ({row.type}): {channels} channels; "
    + f"each unit sees {D.describe_box(model, layer)} of the {model.input_size}×{model.input_size} input."
    + f" Searched: {table.n_images:,} images."
)

if st.button(
    "Dream this unit",
    icon=":material/auto_awesome:",
    help="Open the Dreams page with this layer and channel picked, and grow the picture that makes it fire most.",
    key="units_dream",
):
    st.session_state[common.DREAM_UNIT_KEY] = (sel.model_key, layer, channel)
    st.switch_page("pages/dreams.py")

st.subheader(f"The 9 images that excite {layer}, channel {channel} most")
examples = cache.unit_result(
    ("examples", sel.model_key, data_key, layer, channel),
    lambda: D.unit_examples(model, table, inputs, layer, channel, 9),
)
if not examples:
    st.info("No images to show.")
    st.stop()
clamped = layer in D.clamped_layers(model)
ranked_by = table.ranked_by(layer, channel, len(examples))
pairs = cache.unit_result(
    ("pairs", sel.model_key, data_key, layer, channel),
    lambda: [_pair(model, ex.patch, ex.projection) for ex in examples],
)
for start in range(0, len(examples), 3):
    for col, (rank, ex) in zip(st.columns(3), enumerate(examples[start : start + 3], start + 1), strict=False):
        before = ranked_by[rank - 1]
        value = f"{ex.value:.3g}" + (f" ({before:.3g})" if clamped and before != ex.value else "")
        col.image(
            pairs[rank - 1],
            caption=f"#{rank} · {value} · {names[ex.image] if names else ''} · image {ex.image}",
            width="stretch",
        )
st.caption(
    "Left of each pair: the patch of the image this unit saw where it fired most (grey beyond the image's edge, "
    "which is what the network's zero padding shows it). Right: the projection, bright where a small change "
    "of the pixel would most increase this one unit. Numbers: the unit's activation, the image's "
    f"{label_kind} and its number in the data set."
    + (
        f" {row.type} stops every value at its ceiling, so many images can reach exactly the same top value: "
        "images are ranked by the value before the clamp (in brackets where it was cut), and the projection "
        "lets the gradient through wherever the unit is on, saturated or not."
        if clamped
        else ""
    )
)
if (note := D.border_note(model, layer, examples)) is not None:
    st.warning(note, icon=":material/border_outer:")
with st.expander("Where in its image? Pick one of the nine"):
    which = st.radio("Image", range(1, len(examples) + 1), horizontal=True, key="units_which")
    ex = examples[which - 1]
    whole = (D.to_rgb(model, inputs([ex.image])[0].numpy()) * 255).round().astype(np.uint8)
    st.plotly_chart(
        figures.boxed_image(whole, ex.box, f"image {ex.image}: the unit at row {ex.y}, column {ex.x}"),
        width="stretch",
    )

st.subheader("Your image")
hit = sel.analysis(D.unit_on_image, layer=layer, channel=channel)
y, x = hit.y, hit.x
share = table.share_below(layer, channel, hit.score)
c1, c2 = st.columns([1, 1])
c1.markdown(
    f"Your image excites this unit with **{hit.value:.3g}**"
    + (f" ({hit.score:.3g} before the clamp)" if clamped and hit.score != hit.value else "")
    + (f" at row {y}, column {x} of its {row.out_shape[1]}×{row.out_shape[2]} map" if row.spatial else "")
    + f": stronger than **{share:.0%}** of the {table.n_images:,} images searched"
    + (
        f" (the 9th best of them reached {ranked_by[-1]:.3g}{' before the clamp' if clamped else ''})."
        if len(examples) == 9
        else "."
    )
)
box = D.receptive_box(model, layer, y, x)
mine = sel.analysis(D.unit_projection, layer=layer, channel=channel, y=y, x_pos=x)
c1.image(_pair(model, D.crop(sel.x[0].numpy(), box), D.crop(mine, box)), caption="what it saw · projection")
c2.plotly_chart(
    figures.boxed_image(np.asarray(common.model_input_rgb(sel)), box, "where on your image", height=320),
    width="stretch",
)

if data_key == "photos":
    _photo_sources(examples)
elif names and label_kind != "file":  # file names are all different: nothing to count
    _label_chart(table, layer, channel, names, label_kind)

st.subheader(f"Layer overview: every channel's best patch in {layer}")
pages = list(range(0, channels, OVERVIEW))
first = st.selectbox(
    "Channels",
    pages,
    format_func=lambda s: f"{s}–{min(s + OVERVIEW, channels) - 1}",
    key=f"units_overview_{sel.model_key}_{layer}",
)
shown = range(first, min(first + OVERVIEW, channels))


def mosaic() -> go.Figure:
    patches = D.best_patches(model, table, inputs, layer, shown)
    tiles = [None if p is None else D.to_rgb(model, p) for p in patches]
    return figures.tile_mosaic(tiles, [str(c) for c in shown])


st.plotly_chart(cache.unit_result(("overview", sel.model_key, data_key, layer, first), mosaic), width="stretch")
st.caption(
    "One tile per channel, numbered: the patch of the single image that excites that channel most. "
    "Project it layer after layer to see the features grow from edges to textures to parts."
)
