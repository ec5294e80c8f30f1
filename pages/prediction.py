"""Prediction, pre-processing steps and the architecture table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

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
                f"tensor {tuple(sel.x.shape)}, values {x.min():.2f} … {x.max():.2f}"
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
    "through the same steps: the same size, and pixel values centred the same way. The mean and std are "
    f"{model.normalisation_origin()}."
)

st.subheader("Architecture")
# Short cells, so the whole table fits a 1024 px projector (the long headers and "224x224 (image is 224)"
# cells pushed the receptive-field and stride columns off screen), and a long network (EfficientNet-Lite0:
# 149 layers, ~6,000 px) in one collapsible block per stage.
GROUPED_ABOVE = 40  # layers; fewer fit one table


def _field(r) -> str:
    if r.rf is None:
        return "all"
    return f"{r.rf}×{r.rf}" if r.rf <= model.input_size else f"all ({r.rf})"


def _row(r, prefix: str = "") -> dict:
    return {
        "layer": r.name.removeprefix(prefix),
        "type": r.type,
        "output": "×".join(map(str, r.out_shape)),
        "params": r.params,
        "field": _field(r),
        "stride": str(r.rf_stride) if r.rf_stride is not None else "–",
    }


def _table(rows: list[dict]) -> None:
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", height="content")  # every row, no scroll box


def _blocks(layers: list) -> list[tuple[str, list]]:
    """Consecutive layers grouped by the first part of their names (stem, stage1, ..., head); one-layer
    groups in a row (pool, flatten, dropout, fc) go together."""
    blocks: list[tuple[str, list]] = []
    for r in layers:
        head = r.name.split(".")[0]
        if blocks and blocks[-1][0] == head:
            blocks[-1][1].append(r)
        else:
            blocks.append((head, [r]))
    runs: list[tuple[str, list, bool]] = []  # (name, layers, a run of one-layer groups)
    for name, rows in blocks:
        if len(rows) == 1 and runs and runs[-1][2]:
            runs[-1] = (runs[-1][0], runs[-1][1] + rows, True)
        else:
            runs.append((name, rows, len(rows) == 1))
    return [
        (f"{rows[0].name} … {rows[-1].name}" if len(rows) > 1 and single else name, rows) for name, rows, single in runs
    ]


layers = model.layers
if len(layers) <= GROUPED_ABOVE:
    _table([_row(r) for r in layers])
else:
    for name, rows in _blocks(layers):
        last = rows[-1]
        label = (
            f"**{name}**: {len(rows)} layers, {sum(r.params for r in rows):,} parameters, output "
            f"{'×'.join(map(str, last.out_shape))}, field {_field(last)}"
        )
        with st.expander(label):
            prefix = f"{name}." if len(rows) > 1 and all(r.name.startswith(f"{name}.") for r in rows) else ""
            _table([_row(r, prefix) for r in rows])
st.caption(
    f"{len(layers)} layers, {sum(r.params for r in layers):,} parameters. **field**: the receptive field, the "
    "patch of input pixels one output unit can see (it grows with every convolution and pooling layer; 'all': "
    "the whole image; 'all (N)': a field of N px, larger than the image). **stride**: how many input pixels "
    "apart two neighbouring units look."
)
