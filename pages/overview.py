"""Network overview: the whole network on one screen; click a feature map to follow it back or open it."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from app.analyses import overview as O
from app.pictures.overview import network_figure, tile
from pages import cache, common

FEEDERS = 4  # channels of the previous stage shown as feeding the selected one
DIAGRAM = "ov_diagram"  # session state: (what the diagram shows, its figure)

sel = common.page(
    "Network overview",
    "The whole network at a glance: your image on the left, then one column per stage (each time the maps "
    "get smaller), showing that stage's most active feature maps. Click a map to see which maps of the stage "
    "before feed it most, and open it on the Activations page.",
)
model = sel.model
ov = sel.analysis(O.overview)
stages = [s.layer for s in ov.stages]
chart_key, layer_key, clicked_key = (f"ov_{name}_{sel.model_key}" for name in ("chart", "layer", "clicked"))


def _diagram(key: tuple, draw: Callable[[], go.Figure]) -> go.Figure:
    """The diagram, kept in this session while what it shows holds: a rerun with nothing new for it (a
    button, the sidebar) reuses it instead of drawing its ~50 tiles and 100 traces again."""
    kept = st.session_state.get(DIAGRAM)
    if kept is None or kept[0] != key:
        kept = st.session_state[DIAGRAM] = (key, draw())
    return kept[1]


def channel_key(layer: str) -> str:
    return f"ov_channel_{sel.model_key}_{layer}"


# The pickers below the diagram hold the chosen stage and channel; their values are in session state
# when a run starts, so the diagram above them can frame the choice. A click on a map (the chart's
# selection, kept in its widget state) moves the pickers, once per click: the selection stays in the
# chart's state, and the pickers must stay free to change after it.
chart_state = st.session_state.get(chart_key)
points = chart_state.selection.points if chart_state and chart_state.selection else []
clicked = tuple(points[0]["customdata"]) if points and points[0].get("customdata") else None
if clicked and clicked != st.session_state.get(clicked_key) and clicked[0] in stages:
    st.session_state[clicked_key] = clicked
    st.session_state[layer_key] = clicked[0]
    st.session_state[channel_key(clicked[0])] = int(clicked[1])
layer = st.session_state.setdefault(layer_key, stages[-1])
stage = ov.stages[stages.index(layer)]
channel = int(st.session_state.setdefault(channel_key(layer), stage.channels[0]))

outputs = cache.layer_outputs(sel.model_key, sel.input_key, sel.x)
index = stages.index(layer)
source = stages[index - 1] if index else None
share = sel.analysis(O.feeding_channels, source=source, target=layer, channel=channel) if source else None
order = np.argsort(-share, kind="stable")[:FEEDERS] if source else []
feeders = frozenset((source, int(c)) for c in order)

st.plotly_chart(
    _diagram(
        (sel.model_key, sel.input_key, layer, channel, feeders),
        lambda: network_figure(ov, np.asarray(common.model_input_rgb(sel)), (layer, channel), feeders),
    ),
    width="stretch",
    on_select="rerun",
    selection_mode="points",
    key=chart_key,
)
st.markdown("**→ Classes:** " + " · ".join(f"{name} {p:.1%}" for name, p in ov.top))
st.caption(
    "Each column is one stage, named by the layer shown, its number of channels and map size (and its blocks "
    "and residual additions + where it has them). Each map is stretched to its own range; the number under "
    "it is its channel. Stages hold several layers: the Prediction page's table lists them all."
)

st.subheader("Follow a channel")
pick_layer, pick_channel = st.columns(2)
pick_layer.selectbox("Stage (layer)", stages, key=layer_key)
pick_channel.number_input(f"Channel (0–{stage.shape[0] - 1})", 0, stage.shape[0] - 1, key=channel_key(layer))
if source is None:
    st.caption(f"{layer} is the first stage: it is fed by the image's pixels directly.")
else:
    total = np.abs(share).sum() or 1.0
    st.markdown(
        f"**{layer}, channel {channel}** is fed most by these channels of **{source}** (framed blue above "
        "where they are on show):"
    )
    tiles = st.columns(FEEDERS + 1)
    tiles[0].image(tile(outputs[layer][channel]), caption=f"{layer} #{channel}", width=112)
    for col, c in zip(tiles[1:], order, strict=False):
        col.image(tile(outputs[source][int(c)]), caption=f"#{c}: {share[c] / total:+.0%}", width=112)
    st.caption(
        "Share = gradient × activation summed over the map: how much the channel's total would change if that "
        "earlier channel were switched off, to first order (through one convolution it is exactly the sum of "
        "weight × activation). Negative shares hold the channel back. The percentages are of the total of all "
        f"{len(share)} channels' absolute shares."
    )

if st.button(f"Open {layer}, channel {channel} on the Activations page", icon=":material/grid_view:"):
    st.session_state[f"act_layer_{sel.model_key}"] = layer
    st.session_state[f"act_channel_{sel.model_key}_{layer}"] = int(channel)
    st.switch_page("pages/activations.py")
