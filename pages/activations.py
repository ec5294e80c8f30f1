"""Feature maps of any layer: the whole grid, then one channel large and overlaid."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app.pictures import figures
from pages import cache, common

# Maps shown at once: at 64 a 1024 px wide projector still gives each tile about 70 px;
# all 512 maps of a VGG conv4 layer gave 27 px tiles nobody could read.
CHANNELS_PER_PAGE = 64

sel = common.page(
    "Activations",
    "Each filter of a layer produces one feature map: bright where the filter found its pattern. "
    "Early layers respond to edges and colours, deeper layers to parts of objects.",
)
model = sel.model

names = [r.name for r in model.layers]
default = next((r.name for r in model.layers if r.kind == "relu"), names[0])
layer = st.selectbox("Layer", names, index=names.index(default), key=f"act_layer_{sel.model_key}")
row = model.layer(layer)
outputs = cache.layer_outputs(sel.model_key, sel.input_key, sel.x)
maps = outputs[layer].astype(np.float32)

if not row.spatial:
    st.markdown(f"**{layer}** is a {row.type} layer with {maps.size} values (no spatial layout).")
    order = np.argsort(maps)[::-1][:20]
    st.bar_chart({"value": {f"unit {i}": float(maps[i]) for i in order}}, horizontal=True)
    if row.name == model.layers[-1].name:
        st.caption("These are the class scores (logits): " + ", ".join(model.labels[i] for i in order[:5]) + " …")
    else:
        st.caption("The 20 most active units of this layer.")
    st.stop()

c, h, w = maps.shape
st.markdown(
    f"**{layer}** ({row.type}): {c} feature maps of {h}×{w}; each unit sees "
    f"{row.rf}×{row.rf} input pixels, and neighbouring units are {row.rf_stride} px apart in the input."
)


@st.fragment
def close_up(maps: np.ndarray, order: np.ndarray, colorscale: str) -> None:
    """One channel large and over the image: its widgets rerun this part alone (st.fragment)."""
    c = len(maps)
    st.subheader("One channel up close")
    channel = st.number_input("Channel", 0, c - 1, int(order[0]), key=f"act_channel_{sel.model_key}_{layer}")
    fmap = maps[channel]
    base = np.asarray(common.model_input_rgb(sel))
    left, right = st.columns(2)
    left.plotly_chart(figures.heatmap(fmap, f"{layer}, channel {channel}", colorscale), width="stretch")
    opacity = right.slider("Overlay opacity", 0.0, 1.0, 0.5, 0.05)
    right.plotly_chart(
        figures.rgb_figure(figures.overlay(base, fmap, opacity, colorscale), "over the network's input"),
        width="stretch",
    )
    st.caption(
        f"mean {fmap.mean():.3g}, max {fmap.max():.3g}, {100 * (fmap > 0).mean():.0f}% of units above zero. "
        "The overlay uses the map's colours, from its lowest to its highest value, and stretches the map to the "
        "image, so each cell covers the pixels it is centred on."
    )
    # The question once, the two ways to answer it as short buttons: in half of a 1024 px column the long
    # labels were cut ("What does this channel look for? Dr…").
    st.markdown(f"**What does channel {channel} look for?**")
    dream, units = st.columns(2)
    if dream.button(
        "Dream it",
        icon=":material/auto_awesome:",
        help="Open the Dreams page and grow the picture that makes this channel fire most.",
        key="dream_this_channel",
    ):
        st.session_state[common.DREAM_UNIT_KEY] = (sel.model_key, layer, int(channel))
        st.switch_page("pages/dreams.py")
    if units.button(
        "Its best dataset patches",
        icon=":material/image_search:",
        help="Opens What units look for on this channel: the images that excite it most.",
        key="units_this_channel",
    ):
        st.session_state[common.UNIT_LINK] = (sel.model_key, layer, int(channel))
        st.switch_page("pages/units.py")


@st.fragment
def grid(maps: np.ndarray) -> None:
    """Every map of the layer, then the close-up: the grid's widgets rerun these alone (st.fragment)."""
    c = len(maps)
    c1, c2, c3, c4 = st.columns([3, 2, 2, 2])  # room for "max activation" at 1024 px
    sort_by = c1.selectbox("Order channels by", ["max activation", "mean activation", "channel number"])
    scale = c2.radio("Colour scale", ["shared", "per map"], horizontal=True, help="Per map stretches weak maps.")
    colorscale = c3.selectbox("Colours", ["Viridis", "Greys_r", "Inferno", figures.SIGNED_SCALE])
    order = np.arange(c)
    if sort_by == "mean activation":
        order = np.argsort(maps.mean(axis=(1, 2)))[::-1]
    elif sort_by == "max activation":
        order = np.argsort(maps.max(axis=(1, 2)))[::-1]
    pages = -(-c // CHANNELS_PER_PAGE)
    page = 1
    if pages > 1:
        page = c4.number_input(
            f"Page (of {pages})", 1, pages, 1, key=f"act_page_{sel.model_key}_{layer}", help="64 maps at a time"
        )
    shown = order[(page - 1) * CHANNELS_PER_PAGE : page * CHANNELS_PER_PAGE]
    st.plotly_chart(
        figures.feature_grid(maps, shown, shared_scale=scale == "shared", colorscale=colorscale), width="stretch"
    )
    st.caption(
        f"Maps {(page - 1) * CHANNELS_PER_PAGE + 1}–{(page - 1) * CHANNELS_PER_PAGE + len(shown)} of {c}, in the "
        "chosen order, left to right, top to bottom; each tile's corner shows its channel number."
        + (" The other pages hold the rest." if pages > 1 else "")
    )

    close_up(maps, order, colorscale)


grid(maps)
