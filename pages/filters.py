"""Convolution weights: first-layer filters as pictures, deeper filters per input channel."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app.analyses.filters import filter_channels, first_layer_filters
from app.pictures import figures
from pages import common

name, model = common.current_model()
st.title("Filters")
st.caption(
    "A filter is a small grid of learned weights slid over its input. In the first layer the input "
    "is the image itself, so the weights can be drawn as tiny pictures of what each filter looks for."
)
if not model.trained:
    st.info("These weights are random (untrained model): expect noise, not edges.")

first = first_layer_filters(model)
n, k, _, channels = first.shape
st.subheader(f"First layer: {n} filters of {k}×{k}×{channels}")
st.plotly_chart(figures.filter_grid(first), width="stretch")
st.caption(
    ("Colours show which colour each filter prefers: " if channels == 3 else "Light = positive weight, ")
    + "grey = 0. Each filter is scaled on its own so its pattern is visible; the corner shows its number."
)

st.subheader("Any filter, one input channel at a time")
convs = [r.name for r in model.layers if r.kind == "conv"]
c1, c2 = st.columns(2)
layer = c1.selectbox("Conv layer", convs, index=min(1, len(convs) - 1), key=f"filt_layer_{name}")
out_channels = model.layer(layer).out_shape[0]
index = c2.number_input("Filter", 0, out_channels - 1, 0, key=f"filt_index_{name}_{layer}")
kernels = filter_channels(model, layer, int(index))
st.plotly_chart(figures.kernel_grid(kernels), width="stretch")
norms = np.abs(kernels).sum(axis=(1, 2))
st.caption(
    f"Filter {index} of {layer} has one {kernels.shape[1]}×{kernels.shape[2]} kernel per input channel "
    f"({kernels.shape[0]} in all, numbered by input channel); {figures.SIGNED_WORDS}. The input channels it "
    "weighs most: " + ", ".join(str(i) for i in np.argsort(norms)[::-1][:5]) + "."
)
