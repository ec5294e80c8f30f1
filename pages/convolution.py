"""Convolution, step by step: the sliding window, max pooling and ReLU, and the backward pass, animated."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app.analyses import playground as pg
from app.analyses import stepper as S
from app.analyses.filters import conv_weight
from app.base.errors import LensError
from app.pictures import figures
from app.pictures import stepper as pictures
from pages import common

sel = common.page(
    "Convolution, step by step",
    "Watch a kernel slide over a small piece of your image: at each step the window's values are multiplied by the "
    "kernel's weights and added up into one output cell. Press ▶ to play (the animation runs in your browser), "
    "❚❚ to pause, or drag the step slider.",
)
model = sel.model
first = next(r for r in model.layers if r.kind == "conv")
with model.lock:
    weights = conv_weight(model, first.name).numpy().astype(np.float64)
    layer = model.module.get_submodule(first.path)
real_stride, real_padding, real_dilation = layer.stride[0], layer.padding[0], layer.dilation[0]
channel_names = ["red", "green", "blue"] if model.channels == 3 else ["grey"]


def _explain(exc: LensError) -> None:
    common.show_lens_error(exc)
    st.stop()


def _formula(n: int, k: int, stride: int, padding: int, dilation: int) -> None:
    """The output-size formula, then the same with the numbers in (on two lines, to fit a 1024 px projector)."""
    general, *rest = S.size_formula(n, k, stride, padding, dilation)
    st.latex(
        rf"\begin{{aligned}} H_\text{{out}} = W_\text{{out}} &= {general} \\ &= {' = '.join(rest)} \end{{aligned}}"
    )


# ---------------------------------------------------------------- what to convolve
c1, c2 = st.columns(2)
source = c1.radio(
    "Input",
    ["a crop of your image, as the network sees it", "a small hand-made example (7×7)"],
    key="cs_source",
    help="The crop is taken from the pre-processed image the network really receives (resized and normalised).",
)
if source.startswith("a crop"):
    x_full = sel.x[0].numpy().astype(np.float64)
    channel = (
        channel_names.index(c1.radio("Colour channel", channel_names, horizontal=True, key="cs_channel"))
        if model.channels == 3
        else 0
    )
    side = c2.slider("Crop size", 6, 12, 8, key="cs_crop", help="More cells means more steps to watch.")
    height, width = x_full.shape[1:]
    start_top, start_left = S.busiest_crop(x_full[channel], side)
    top = c2.slider("Crop top", 0, height - side, start_top, key="cs_top", help="Starts where the image varies most.")
    left = c2.slider("Crop left", 0, width - side, start_left, key="cs_left")
    x = x_full[channel, top : top + side, left : left + side]
    where = f"rows {top}–{top + side - 1}, columns {left}–{left + side - 1} of the {channel_names[channel]} channel"
else:
    x, channel = S.SMALL_EXAMPLE, 0
    where = "a bright square on a dark background"

kind = c1.radio(
    "Kernel",
    [f"a real filter of {first.name}, the network's first convolution", "my own (editable)"],
    key="cs_kernel_kind",
)
if kind.startswith("a real"):
    index = c2.number_input(f"Filter of {first.name}", 0, weights.shape[0] - 1, 0, key="cs_filter")
    kernel = weights[int(index), channel]
    kernel_words = f"filter {index} of {first.name}, its weights for the {channel_names[channel]} channel"
else:
    size = c2.select_slider("Kernel size", [1, 2, 3, 4, 5], 3, key="cs_size")
    start = np.array(pg.KERNELS["Sobel x"], dtype=np.float64) if size == 3 else np.zeros((size, size))
    if size != 3:
        start[:, 0], start[:, -1] = -1, 1  # a vertical-edge finder of any size
        if size == 1:
            start[:] = 1
    edited = c2.data_editor(pd.DataFrame(start, dtype=float), key=f"cs_weights_{size}", width="stretch")
    kernel = edited.to_numpy(dtype=np.float64)
    if not np.isfinite(kernel).all():
        st.error("Every kernel weight must be a number.", icon=":material/error:")
        st.stop()
    kernel_words = "your kernel"
k = kernel.shape[0]

c1, c2, c3 = st.columns(3)
stride = c1.slider("Stride s", 1, 3, real_stride, key="cs_stride", help="How far the window jumps between steps.")
padding = c2.slider("Padding p", 0, 3, real_padding, key="cs_padding", help="Rings of zeros added around the input.")
dilation = c3.slider("Dilation d", 1, 3, real_dilation, key="cs_dilation", help="Gaps between the kernel's cells.")
pads = [r for r in model.layers[: model.layers.index(first)] if r.kind == "pad"]
pad_words = ""
if pads:
    sides = model.module.get_submodule(pads[-1].path).padding  # (left, right, top, bottom)
    pad_words = (
        f" A separate padding layer before it, {pads[-1].name}, first adds zeros: {sides[0]} column(s) left, "
        f"{sides[1]} right, {sides[2]} row(s) above, {sides[3]} below."
    )
st.caption(
    f"{first.name} itself uses a {weights.shape[-1]}×{weights.shape[-1]} kernel, stride {real_stride}, "
    f"padding {real_padding} and dilation {real_dilation}.{pad_words}"
)
try:
    conv = S.convolution(x, kernel, stride, padding, dilation)
except LensError as exc:
    _explain(exc)
_formula(x.shape[0], k, stride, padding, dilation)

tab_conv, tab_pool, tab_back = st.tabs(["Convolution", "ReLU & max pooling", "Backward pass"])

# ---------------------------------------------------------------- convolution
with tab_conv:
    n = x.shape[0]
    st.plotly_chart(
        pictures.sweep_figure(
            conv,
            (
                f"input {n}×{n}" + (f", padded to {n + 2 * padding}×{n + 2 * padding}" if padding else ""),
                f"kernel {k}×{k}",
                "window × kernel",
                f"output {conv.out_shape[0]}×{conv.out_shape[1]}",
            ),
            inside=(padding, padding, padding + n, padding + n) if padding else None,
        ),
        width="stretch",
        key="cs_conv",
    )
    check = np.abs(conv.out - S.torch_convolution(x, kernel, stride, padding, dilation)).max()
    st.caption(
        f"Input: {where}. Kernel: {kernel_words}. Colours: {figures.SIGNED_WORDS}. "
        f"PyTorch's F.conv2d on the same numbers gives the same output (largest difference {check:.1g})."
        + (
            f" In the network, {first.name} adds up such maps over all {model.channels} colour channels "
            "to make one feature map."
            if model.channels > 1 and kind.startswith("a real")
            else ""
        )
    )

# ---------------------------------------------------------------- ReLU and pooling
with tab_pool:
    activated = S.relu(conv.out)
    st.markdown(
        "After a convolution comes the activation. **ReLU** keeps positive values and turns negative ones into 0: "
        "step through the convolution's output one cell at a time."
    )
    st.plotly_chart(
        pictures.relu_figure(conv.out, ("convolution output", "after ReLU")), width="stretch", key="cs_relu"
    )
    st.markdown(
        "**Max pooling** then shrinks the map: each window keeps only its largest value (★ marks the winner). "
        "Padding for pooling is −∞, so it can never win."
    )
    c1, c2, c3, c4 = st.columns(4)
    window = c1.slider("Window", 1, 4, 2, key="cs_pool_window")
    pool_stride = c2.slider("Stride", 1, 4, 2, key="cs_pool_stride")
    pool_padding = c3.slider("Padding", 0, 2, 0, key="cs_pool_padding")
    pool_dilation = c4.slider("Dilation", 1, 2, 1, key="cs_pool_dilation")
    try:
        pooling = S.max_pool(activated, window, pool_stride, pool_padding, pool_dilation)
    except LensError as exc:
        _explain(exc)
    _formula(activated.shape[0], window, pool_stride, pool_padding, pool_dilation)
    st.plotly_chart(
        pictures.pool_figure(pooling, ("after ReLU", f"max pool {window}×{window}")), width="stretch", key="cs_pool"
    )
    check = np.abs(pooling.out - S.torch_max_pool(activated, window, pool_stride, pool_padding, pool_dilation)).max()
    st.caption(f"PyTorch's F.max_pool2d gives the same output (largest difference {check:.1g}).")

# ---------------------------------------------------------------- backward
with tab_back:
    small = x[:6, :6]
    st.markdown(
        "Training needs to know how the loss L changes with every input value and every weight. Backpropagation "
        "brings the **upstream gradient** ∂L/∂y, one number per output cell (here made-up small whole numbers, so "
        f"you can check the sums). This tab uses the top-left {small.shape[0]}×{small.shape[1]} corner of the input "
        "above, with the same kernel, stride, padding and dilation."
    )
    try:
        forward = S.convolution(small, kernel, stride, padding, dilation)
    except LensError as exc:
        _explain(exc)
    g = S.upstream_example(forward.out_shape)
    grad_sweep, dx = S.input_gradient(g, kernel, small.shape, stride, padding, dilation)
    dw = S.kernel_gradient(small, g, k, stride, padding, dilation)
    auto_dx, auto_dw = S.autograd_gradients(small, kernel, g, stride, padding, dilation)

    st.subheader("Gradient with respect to the input: a full convolution with the flipped kernel")
    frame = dilation * (k - 1)
    h, w = small.shape
    st.markdown(
        f"Every input value was used by several windows, once with each weight it met. So ∂L/∂x collects, for each "
        f"input value, upstream gradient × weight over those windows. Written as one sweep: spread ∂L/∂y out by the "
        f"stride ({stride - 1} zero(s) between values), frame it with d(k−1) = {frame} zero(s), and slide the kernel "
        "**turned 180°** over it. The result covers the padded input; the dashed frame marks the real input, "
        "the rest (padding) is thrown away."
    )
    g_rows = (g.shape[0] - 1) * stride + 1
    g_cols = (g.shape[1] - 1) * stride + 1
    st.plotly_chart(
        pictures.sweep_figure(
            grad_sweep,
            ("∂L/∂y spread out and framed", "kernel turned 180°", "products", "∂L/∂x (padded)"),
            inside=(frame, frame, frame + g_rows, frame + g_cols),
            keep=(padding, padding, padding + h, padding + w) if padding else None,
        ),
        width="stretch",
        key="cs_dx",
    )
    st.caption(
        f"Autograd's ∂L/∂x (L = Σ ∂L/∂y · y): largest difference from the sweep's {np.abs(dx - auto_dx).max():.1g}."
    )

    st.subheader("Gradient with respect to the kernel: the input correlated with the upstream gradient")
    st.markdown(
        "Weight (a, b) multiplied one input value in every window. Its gradient is the sum of those values, each "
        "times its window's upstream gradient: ∂L/∂y slides over the (padded) input as if it were the kernel, "
        f"its cells {stride} apart (the stride) and moving {dilation} at a time (the dilation): one step per weight."
    )
    st.plotly_chart(
        pictures.sweep_figure(
            dw,
            ("input" + (" (padded)" if padding else ""), "∂L/∂y as the kernel", "products", "∂L/∂w"),
            inside=(padding, padding, padding + h, padding + w) if padding else None,
        ),
        width="stretch",
        key="cs_dw",
    )
    st.caption(f"Autograd's ∂L/∂w: largest difference from the sweep's {np.abs(dw.out - auto_dw).max():.1g}.")

    st.subheader("Side by side: convolution and max pooling backwards")
    pool_in = small[: small.shape[0] // 2 * 2, : small.shape[1] // 2 * 2]
    pooled = S.max_pool(pool_in, 2, 2)
    g_pool = S.upstream_example(pooled.out.shape, seed=1)
    pool_dx = S.max_pool_input_gradient(pooled, g_pool)
    pool_auto = S.pool_autograd_gradient(pool_in, 2, 2, g_pool)
    left, right = st.columns(2)
    short = {"texttemplate": "%{z:.2g}"}  # half-width maps on a 1024 px screen: 4 digits ran into each other
    with left:
        st.markdown(
            f"**Convolution**: each upstream value is spread over a whole {k}×{k} window, weighted by the kernel; "
            "overlapping windows add up."
        )
        st.plotly_chart(
            figures.number_map(dx, "∂L/∂x of the convolution", True, signed=True).update_traces(**short),
            key="cs_side_conv",
        )
        st.caption(f"Autograd agrees to {np.abs(dx - auto_dx).max():.1g}.")
    with right:
        st.markdown(
            "**Max pooling 2×2, stride 2** (as in the Layer playground): each upstream value goes, whole, to the one "
            "input that won its window; every other input gets 0."
        )
        st.plotly_chart(
            figures.number_map(pool_dx, "∂L/∂x of max pooling", True, signed=True).update_traces(**short),
            key="cs_side_pool",
        )
        st.caption(
            f"The playground's autograd pooling backward, weighted by the upstream gradient, agrees to "
            f"{np.abs(pool_dx - pool_auto).max():.1g}."
        )
