"""Sanity checks: Adebayo et al.'s cascading randomisation, to see which maps explain the network."""

from __future__ import annotations

import streamlit as st

from app.analyses import sanity
from app.pictures import comparisons
from pages import common

EXPLAIN = (
    "If a map really explains *this* network, it must change when the network forgets what it learned. "
    "Adebayo et al. (2018, *Sanity Checks for Saliency Maps*) tested that: they replaced the trained "
    "weights with random ones, layer after layer, starting at the top (the class scores) and going down "
    "towards the image, and recomputed the maps after every step. Here the same is done on a private copy "
    "of the network (the one everyone else uses is never touched), one block of layers at a time."
)
MEANING = (
    "**What it means.** A map that stays almost the same while the network is destroyed cannot be telling "
    "you what the network learned: it mostly shows the image itself (its edges) and the shape of the "
    "architecture. Guided backpropagation keeps only positive signal at every ReLU on the way back, and "
    "that throws away most of what the top layers say, so it draws the image's edges whatever the class "
    "scores are; it changes only once the layers near the image, which decide which edges it draws, are "
    "random too. Plain gradients and Grad-CAM depend on the top layers, so they drop as soon as those are "
    "random. A pretty, sharp map is therefore not a trustworthy one: check that it depends on the "
    "network before you believe it."
)
UNTRAINED = (
    "This network is **untrained**, so even the first column comes from random weights. The check still "
    "shows how each method behaves by construction; choose a trained model in the sidebar to see it on "
    "what a network really learned."
)

# Stages run unless the student asks for more: the top blocks carry the lesson, and each stage costs two
# gradient passes.
DEFAULT_STAGES = 6

sel = common.page(
    "Sanity checks: do the maps depend on the network?",
    "Randomise the network from the top down and watch which attribution maps change.",
)
model = sel.model
st.markdown(EXPLAIN)

groups = sanity.layer_groups(model)
names = [name for name, _ in groups]
left, right = st.columns([3, 2])
depth = left.select_slider(
    "Re-initialise from the top down to",
    options=names,
    value=names[min(DEFAULT_STAGES, len(names)) - 1],
    key=f"sanity_depth_{sel.model_key}",
    help="Each step re-initialises one more block of layers (all of them, cumulatively, from the top).",
)
stages = names.index(depth) + 1
predicted = int(sel.probabilities().argmax())
right.markdown(
    f"Explaining **{model.labels[predicted]}**, the original network's prediction, at every stage "
    f"({stages} stage{'s' if stages > 1 else ''} after the original)."
)

params = dict(target=predicted, stages=stages)
if sel.has(sanity.cascade_in_worker, **params):
    seconds = 0.0
else:
    with st.spinner("Timing one step on this network (first visit only)…"):
        seconds = sanity.estimate_seconds(model, stages)
result: sanity.Cascade = common.queued_analysis(
    sel,
    sanity.cascade_in_worker,
    seconds,
    f"Randomising {model.title} in {stages} steps and recomputing the maps",
    "Compute the sanity check",
    "sanity",
    **params,
)

st.subheader("How similar is each map to the original?")
st.plotly_chart(comparisons.correlation_chart(result.stages, result.correlations), width="stretch", key="sanity_chart")
last = result.stages[-1]
values = {m: float(result.correlations[m][-1]) for m in sanity.METHODS}
st.caption(
    "Spearman rank correlation of the map's absolute values with the original network's map: 1 = the pixels "
    "are ranked exactly as before, 0 = no relation left. After re-initialising down to "
    f"**{last}**: " + ", ".join(f"{m} {v:.2f}" for m, v in values.items()) + "."
)

st.subheader("The maps, stage by stage")
st.plotly_chart(comparisons.cascade_grid(result.maps, result.stages), width="stretch", key="sanity_grid")
st.caption(
    "Each row is one method, each column one more block re-initialised (left: the original network). Every "
    "map is stretched to its own range (bright = the largest values), so what you compare is the pattern."
)
st.markdown(MEANING)
if not model.trained:
    st.info(UNTRAINED, icon=":material/info:")
