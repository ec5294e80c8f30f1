"""Prediction, pre-processing steps and the architecture table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from app.networks.layers import describe_rf, total_params
from app.pictures import figures
from pages import common


def _upscaled(image: Image.Image, side: int = 160) -> Image.Image:
    """Tiny steps (28x28) enlarged with visible pixels, so each thumbnail is the same readable size."""
    if max(image.size) >= side:
        return image
    f = side // max(image.size)
    return image.resize((image.width * f, image.height * f), Image.Resampling.NEAREST)


sel = common.selection()
model = sel.model

st.title(f"What does {model.title} see?")
badge = "trained" if model.trained else ":orange[**untrained — predictions are meaningless**]"
st.caption(f"Weights: {model.weights} · {badge} · running on {model.device.type.upper()}")

STEPS_PER_ROW = 4  # readable at 1024 px: a 7-step photo pipeline in one row gave 50 px thumbnails

st.subheader("Prediction")
left, right = st.columns([3, 2], gap="large")
probs = sel.probabilities()
top = np.argsort(probs)[::-1][:5]
pairs = [(model.labels[i], float(probs[i])) for i in top]
with left:
    st.markdown(f"Top-1: **{pairs[0][0]}** ({pairs[0][1]:.1%})")
    st.plotly_chart(figures.top_k_bar(pairs, title="Top-5 softmax probabilities"), width="stretch")
with right:
    st.caption(
        "The last layer gives one score (logit) per class. Softmax turns the scores into "
        "probabilities that add up to 1; the bars show the five largest."
    )

st.info(common.what_the_model_knows(model), icon=":material/info:")

st.subheader("Pre-processing: from your image to the network's input")
x = sel.x[0].numpy()
mean = ", ".join(f"{m:.3f}" for m in model.mean)
std = ", ".join(f"{s:.3f}" for s in model.std)
cells = [*sel.steps, None]  # the last cell: the normalisation, in numbers
for start in range(0, len(cells), STEPS_PER_ROW):
    cols = st.columns(STEPS_PER_ROW)
    for col, step in zip(cols, cells[start : start + STEPS_PER_ROW], strict=False):
        if step is None:
            col.markdown(
                f"**normalise**: (pixel/255 − mean) / std\n\nmean = ({mean})\n\nstd = ({std})\n\n"
                f"tensor {tuple(sel.x.shape)}, values {x.min():.2f} … {x.max():.2f}\n\n"
                f"mean and std: {model.normalisation_origin()}"
            )
        else:
            col.image(_upscaled(step.image), caption=f"{step.name}: {step.detail}", width="stretch")
if sel.intake:
    st.caption(
        "Converted like Zalando made Fashion-MNIST: trim the background, shrink to 28 px, sharpen, "
        "centre, invert, grey."
        if sel.intake == "photo"
        else "Read as an image already in Fashion-MNIST style (light object on black): greyscale and resize only."
    )
st.caption(
    "The network was trained on images prepared exactly this way, so every new image must go "
    "through the same steps: the same size, and pixel values centred the same way."
)

st.subheader("Architecture")
rows = [
    {
        "layer": r.name,
        "type": r.type,
        "output shape": " × ".join(map(str, r.out_shape)),
        "parameters": r.params,
        "receptive field": describe_rf(r, model.input_size),
        "stride at input": str(r.rf_stride) if r.rf_stride is not None else "–",
    }
    for r in model.layers
]
st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", height="content")  # every row, no scroll box
st.caption(
    f"{len(rows)} layers, {total_params(model.layers):,} parameters. The receptive field is the patch of "
    "input pixels one output unit can see; it grows with every convolution and pooling layer. "
    "The stride at the input is how many pixels apart two neighbouring units look."
)
