"""Layer playground: convolution, ReLU, pooling, FC + softmax and normalisation, by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app.analyses import playground as pg
from app.base.errors import LensError
from app.base.numeric import softmax
from app.pictures import figures
from pages import common

sel = common.page(
    "Layer playground",
    "Each section applies one kind of layer to your picture with the same PyTorch operation a network uses. "
    "Switch to the 8×8 crop to read every number, like a worked example in a textbook.",
)
model = sel.model


grey = pg.grey_array(sel.image)
small = st.radio(
    "Work on",
    ["the whole picture (grey, at most 128 px)", "an 8×8 crop with its numbers"],
    horizontal=True,
    key="pg_view",
)
numbers = small.startswith("an 8")
if numbers:
    c1, c2 = st.columns(2)
    top = c1.slider("Crop top", 0, max(0, grey.shape[0] - 8), grey.shape[0] // 2 - 4, key="pg_top")
    left = c2.slider("Crop left", 0, max(0, grey.shape[1] - 8), grey.shape[1] // 2 - 4, key="pg_left")
    image = pg.crop(grey, top, left)
else:
    image = grey


@st.fragment
def pooling(activated: np.ndarray, numbers: bool) -> None:
    """Section 3 and its backward pass: its widgets rerun this part alone (st.fragment), not the page."""
    # ---------------------------------------------------------------- pooling
    st.header("3. Pooling")
    st.markdown(
        "Pooling shrinks a map by summarising each window: **max** keeps the strongest response, **average** the mean. "
        "The stride is how far the window jumps: smaller than the window and the windows overlap, larger and some "
        "values are never looked at. The coverage map counts how many windows read each value."
    )
    c1, c2, c3 = st.columns(3)
    kind = c1.radio("Pooling", ["max", "avg"], horizontal=True, key="pg_pool_kind")
    window = c2.slider("Window", 1, 4, 2, key="pg_window")
    stride = c3.slider("Stride", 1, 4, 2, key="pg_stride")
    if min(activated.shape) < window:
        st.warning("The map is smaller than the window; choose a smaller window.")
        st.stop()
    pooled = pg.pool(activated, kind, window, stride)
    coverage = pg.pool_coverage(activated.shape, window, stride)
    c1, c2 = st.columns(2)
    c1.plotly_chart(
        figures.number_map(coverage, "windows reading each value", numbers, "Blues"), width="stretch", key="pg_cov"
    )
    c2.plotly_chart(
        figures.number_map(pooled, f"{kind} pool {window}×{window}, stride {stride}", numbers, "Viridis"),
        width="stretch",
        key="pg_pooled",
    )
    relation = "overlap" if stride < window else "leave gaps" if stride > window else "sit side by side"
    unread = (coverage == 0).mean()
    st.caption(
        f"{activated.shape[0]}×{activated.shape[1]} → {pooled.shape[0]}×{pooled.shape[1]}: stride {stride} with a "
        f"{window}-wide window, so the windows {relation}."
        + (
            f" {100 * unread:.0f} % of the values are never read (gaps, or an edge too thin for a whole window)."
            if unread
            else ""
        )
    )

    st.subheader("Backward through pooling")
    st.markdown(
        "During training the error signal travels back through the pooling layer. Pick one output cell to see where "
        "its gradient lands: max pooling passes it only to the value that won, average pooling shares it equally, "
        f"1/(N·N) = 1/{window * window} to each of the window's values. PyTorch's autograd computes this map."
    )
    c1, c2 = st.columns(2)
    # A new pooled size, kind or picture restarts the pickers at a cell where the rule shows (not an all-zero tie).
    default_row, default_col = pg.teaching_cell(activated, kind, window, stride)
    shape_key = f"{pooled.shape[0]}x{pooled.shape[1]}_{kind}_{default_row}_{default_col}"
    row = c1.number_input("Output row", 0, pooled.shape[0] - 1, default_row, key=f"pg_cell_row_{shape_key}")
    col = c2.number_input("Output column", 0, pooled.shape[1] - 1, default_col, key=f"pg_cell_col_{shape_key}")
    grad = pg.pool_backward(activated, kind, window, stride, (int(row), int(col)))
    # The window plus a 2-value margin, with numbers and the map's own row/column numbers on the axes.
    size = window + 4
    top = int(np.clip(int(row) * stride - 2, 0, max(0, activated.shape[0] - size)))
    left = int(np.clip(int(col) * stride - 2, 0, max(0, activated.shape[1] - size)))
    axes = dict(x=np.arange(left, left + size), y=np.arange(top, top + size))
    c1, c2 = st.columns(2)
    c1.plotly_chart(
        figures.number_map(
            pg.crop(activated, top, left, size), "values around the window", True, "Viridis"
        ).update_traces(**axes),
        width="stretch",
        key="pg_window_values",
    )
    c2.plotly_chart(
        figures.number_map(
            pg.crop(grad, top, left, size), f"gradient from output ({row}, {col})", True, "Oranges"
        ).update_traces(**axes),
        width="stretch",
        key="pg_grad",
    )
    ties = pg.tie_count(activated, window, stride, (int(row), int(col)))
    tie_words = ""
    if kind == "max" and ties > 1:
        tie_words = (
            f" {ties} values of this window tie for the maximum (all {pooled[int(row), int(col)]:.4g}), so which "
            "one gets the gradient is "
            "arbitrary: PyTorch picks the first in reading order. Pick a cell with one clear winner to see the rule."
        )
    st.caption(
        f"The window of output ({row}, {col}) starts at input row {int(row) * stride}, column {int(col) * stride}; "
        f"the gradients shown add up to {grad.sum():.3g}.{tie_words}"
    )


@st.fragment
def convolution(image: np.ndarray, numbers: bool) -> None:
    """Sections 1 and 2, then pooling on their result: the kernel's widgets rerun these alone."""
    # ---------------------------------------------------------------- convolution
    st.header("1. Convolution")
    st.markdown(
        "A 3×3 kernel slides over the image; at every position the nine pixels under it are multiplied by the nine "
        "weights and added up, giving one value of the **feature map**. Which pattern lights up depends only on the "
        "weights: an edge kernel answers to sudden changes, a blur kernel to the local average. "
        "(Like PyTorch, the kernel is not flipped, so strictly this is a cross-correlation.)"
    )
    c1, c2 = st.columns([1, 2])
    preset = c1.selectbox("Preset kernel", list(pg.KERNELS), index=2, key="pg_preset")
    padding = c1.radio(
        "Border", ["valid (no padding, map shrinks by 2)", "same (zero padding)"], key="pg_padding"
    ).startswith("same")
    edited = c2.data_editor(
        pd.DataFrame(
            pg.KERNELS[preset], columns=["left", "centre", "right"], index=["top", "middle", "bottom"], dtype=float
        ),
        key=f"pg_kernel_{preset}",
        width="stretch",
    )
    c2.caption("Edit any weight; choosing another preset starts again from its values.")
    kernel = edited.to_numpy(dtype=np.float32)
    if not np.isfinite(kernel).all():
        st.error("Every kernel weight must be a number.", icon="🚫")
        st.stop()
    fmap = pg.convolve(image, kernel, padding=1 if padding else 0)
    c1, c2 = st.columns(2)
    c1.plotly_chart(figures.number_map(image, "input (grey 0–255)", numbers), width="stretch", key="pg_in")
    c2.plotly_chart(
        figures.number_map(fmap, f"feature map ({preset} weights)", numbers, signed=True),
        width="stretch",
        key="pg_fmap",
    )
    st.caption(f"Input {image.shape[0]}×{image.shape[1]} → feature map {fmap.shape[0]}×{fmap.shape[1]}.")

    # ---------------------------------------------------------------- ReLU
    st.header("2. ReLU")
    st.markdown(
        "The activation keeps positive responses as they are and replaces every negative one with zero. "
        f"Colours: {figures.SIGNED_WORDS}. After ReLU the blue is gone, so only the places where the kernel's "
        "pattern was really present stay switched on."
    )
    activated = pg.relu(fmap)
    c1, c2 = st.columns(2)
    c1.plotly_chart(figures.number_map(fmap, "before ReLU", numbers, signed=True), width="stretch", key="pg_pre_relu")
    c2.plotly_chart(figures.number_map(activated, "after ReLU", numbers, signed=True), width="stretch", key="pg_relu")
    st.caption(f"{100 * (fmap < 0).mean():.0f} % of the values were negative and became 0.")

    pooling(activated, numbers)


convolution(image, numbers)

st.subheader("Global average pooling")
st.markdown(
    "A conv layer produces a stack of maps, one per kernel. Global average pooling replaces each whole map by its "
    "mean, turning the stack into a vector with one number per channel, ready for a fully connected layer. "
    "Here the stack is all seven preset kernels (with ReLU) applied to the same input."
)
stack = pg.feature_stack(image)
vector = pg.global_average_pool(stack)
st.plotly_chart(
    figures.feature_grid(stack, shared_scale=False, cols=len(stack), titles=list(pg.KERNELS), height=220),
    width="stretch",
    key="pg_stack",
)
st.plotly_chart(figures.value_bars(vector, list(pg.KERNELS), "mean of each map"), width="stretch", key="pg_gap")
st.caption("Each map above becomes one number below: its mean.")


@st.fragment
def fully_connected() -> None:
    """Section 4: the temperature reruns this part alone."""
    # ---------------------------------------------------------------- FC + softmax
    st.header("4. Fully connected layer and softmax")
    st.markdown(
        f"The {model.title}'s last layer is fully connected: every class score is a weighted sum of all the features "
        "that reach it, plus a bias. Softmax turns the scores into probabilities that add up to 1; dividing the scores "
        "by a temperature first makes the result flatter (T > 1) or more decisive (T < 1) without changing the order."
    )
    try:
        with st.spinner("Running the network once…"):
            parts = sel.analysis(pg.last_layer)
    except LensError as exc:
        common.show_lens_error(exc)
        st.stop()
    temperature = st.select_slider("Temperature T", [0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 10.0], 1.0, key="pg_temperature")
    logits = parts["logits"]
    probs = softmax(logits, temperature)
    best = np.argsort(logits)[::-1][:10]
    st.dataframe(
        pd.DataFrame(
            {
                "class": [model.labels[i] for i in best],
                "score (logit)": logits[best],
                f"probability at T={temperature:g}": probs[best],
                "probability at T=1": softmax(logits)[best],
            }
        ),
        hide_index=True,
        width="stretch",
    )
    top = int(best[0])
    st.caption(
        f"Score of {model.labels[top]} = sum of {parts['features'].size} feature × weight products "
        f"({float(parts['features'] @ parts['weight'][top]):.3f}) + bias ({parts['bias'][top]:.3f}) = "
        f"{logits[top]:.3f}. "
        f"All {len(probs)} probabilities add up to {probs.sum():.4f}."
    )


fully_connected()


@st.fragment
def normalisation() -> None:
    """Section 5: the colour channel reruns this part alone."""
    # ---------------------------------------------------------------- normalisation
    st.header("5. Normalisation")
    lowest = min((0 - m) / s for m, s in zip(model.mean, model.std, strict=True))
    highest = max((1 - m) / s for m, s in zip(model.mean, model.std, strict=True))
    spread = (
        "so typical inputs sit around 0 with a spread of about 1"
        if model.norm_data
        else f"so every input lies between {lowest:.2f} and {highest:.2f}"
    )
    st.markdown(
        "Before the first layer the pixels are rescaled twice: from whole numbers 0–255 to fractions 0–1, then a mean "
        f"is subtracted and the result divided by a standard deviation, {spread}. For the {model.title} these are "
        f"{model.normalisation_origin()}. Both steps are linear, so the histogram keeps its shape and only the axis "
        "changes."
    )
    seen = np.asarray(sel.steps[-1].image)
    if model.channels == 3:
        names = ["red", "green", "blue"]
        channel = names.index(st.radio("Channel", names, horizontal=True, key="pg_channel"))
        pixels = seen[..., channel]
    else:
        channel, pixels = 0, seen
    stages = pg.normalisation(pixels, model.mean[channel], model.std[channel])
    cols = st.columns(3)
    for col_, (name, stage) in zip(cols, stages.items(), strict=True):
        col_.plotly_chart(
            figures.histogram(stage["edges"], stage["counts"], name), width="stretch", key=f"pg_hist_{name}"
        )
    st.caption(
        f"Mean {model.mean[channel]:.3f} and standard deviation {model.std[channel]:.3f} (0–1 scale, "
        + ("the training images' statistics" if model.norm_data else "fixed constants")
        + f"); this image: mean {stages['standardised']['values'].mean():.2f}, "
        f"std {stages['standardised']['values'].std():.2f} after normalisation."
    )


normalisation()
