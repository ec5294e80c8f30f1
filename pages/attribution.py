"""Which pixels matter: saliency, guided backpropagation and Grad-CAM, alone and side by side."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app.analyses import attribution as attr
from app.pictures import figures
from pages import common

EXPLAIN = {
    "saliency": (
        "A saliency map asks, for every pixel: if this pixel were a little brighter or darker, how much "
        "would the score of the chosen class move? That is the gradient of the class score with respect to "
        "the input; we show its size (the largest over the colour channels). Bright means *sensitive*, "
        "which is not always the same as *being the object*."
    ),
    "smoothgrad": (
        "One gradient is speckled, because tiny changes of the image change it a lot. SmoothGrad averages "
        "the map over noisy copies of the image: the speckle averages out, the structure stays."
    ),
    "guided": (
        "Guided backpropagation also sends the score back to the pixels, but at every ReLU it lets through "
        "only positive signal, and only into units that were active. What survives are the patterns that "
        "push the score *up*, so the result looks like a sharp drawing of edges. Mid-grey means no effect; "
        "brighter or darker colours show which colour channel pushes the score up or down."
    ),
    "channel": (
        "Here the score is one feature map of a layer (all its positions added up), so the picture shows "
        "which input pixels make that filter fire for this image."
    ),
    "gradcam": (
        "Grad-CAM looks at a convolutional layer instead of the pixels. Each feature map is weighted by how "
        "much the class score gains, on average, when that map grows; the weighted maps are added and only "
        "the positive part is kept. The map is coarse (one value per cell of the layer's grid, stretched to "
        "the image) but class-specific: pick another class and the bright region moves."
    ),
    "guided_gradcam": (
        "Guided Grad-CAM multiplies the two: the fine edges of guided backpropagation, kept only where "
        "Grad-CAM finds evidence for the class."
    ),
    "compare": (
        "The same class explained four ways. Gradient maps (left) are sharp but noisy and hardly change "
        "between classes; Grad-CAM (right) is blurry but points at the region the class depends on."
    ),
}

sel = common.page(
    "Which pixels matter?",
    "Attribution maps trace a score back to the input image, to show which pixels the network relied on. "
    "All of them come from one forward and one backward pass; they differ in what they let flow backwards.",
)
model = sel.model

top, opts = st.columns([2, 3])
with top:
    target = common.class_picker(sel, "Class to explain", key=f"attr_target_{sel.model_key}")
c1, c2, c3 = opts.columns(3)
colorscale = c1.selectbox("Colour map", ["Inferno", "Jet", "Viridis", "Hot", "Greys_r"], key="attr_cmap")
opacity = c2.slider("Overlay opacity", 0.0, 1.0, 0.55, 0.05, key="attr_opacity")
clip = c3.slider(
    "Clip at percentile",
    90.0,
    100.0,
    99.0,
    0.5,
    key="attr_clip",
    help="Values above this percentile are shown at full brightness, so a few extreme pixels "
    "do not make the rest of the map look black.",
)
base = np.asarray(common.model_input_rgb(sel))
label = model.labels[target]


def downloads(name: str, picture: np.ndarray, values: np.ndarray, key: str) -> None:
    """PNG of what is shown and the raw map as .npy (same shape as returned by app.analyses.attribution)."""
    common.download_pair(f"{sel.model_key}_{name}_{label}", picture, values, key, name.replace("_", " "))


def heat_panels(name: str, values: np.ndarray, key: str) -> None:
    """A [H, W] map alone and overlaid on the network's input, both scaled 0-1 with the clip slider."""
    scaled = attr.unit_range(values, clip)
    alone, over = st.columns(2)
    with alone:
        fig = figures.heatmap(scaled, f"{name} alone (0–1)", colorscale)
        st.plotly_chart(fig, width="stretch", key=f"{key}_alone", theme=None)
        downloads(name, figures.colorize(scaled, colorscale), values, f"{key}_alone")
    with over:
        blended = figures.overlay(base, scaled, opacity, colorscale)
        st.plotly_chart(figures.rgb_figure(blended, f"{name} over the input"), width="stretch", key=f"{key}_over")
        downloads(f"{name}_overlay", blended, values, f"{key}_over")


def signed_picture(grad: np.ndarray) -> np.ndarray:
    return (attr.gradient_image(grad, clip) * 255).round().astype(np.uint8)


def gradient_panels(name: str, grad: np.ndarray, key: str) -> None:
    """A signed [C, H, W] gradient as a picture, and its magnitude as a grey map."""
    picture = signed_picture(grad)
    grey = figures.colorize(attr.unit_range(attr.magnitude(grad), clip), "Greys_r")
    left, right = st.columns(2)
    with left:
        st.plotly_chart(figures.rgb_figure(picture, f"{name} (signed)"), width="stretch", key=f"{key}_rgb")
        downloads(name, picture, grad, f"{key}_rgb")
    with right:
        st.plotly_chart(figures.rgb_figure(grey, f"{name}: magnitude"), width="stretch", key=f"{key}_mag")
        downloads(f"{name}_magnitude", grey, attr.magnitude(grad), f"{key}_mag")


def compute(func, message: str, **params):
    """A cached analysis (instant when this image and these parameters were seen) with a spinner."""
    with st.spinner(message):
        return sel.analysis(func, **params)


cam_default = attr.default_cam_layer(model)
tabs = st.tabs(["Saliency", "Guided backprop", "Grad-CAM", "Compare"], key="attr_tab", on_change="rerun")
maps = compute(attr.class_maps, f"Computing the maps for '{label}'…", target=target, layer=cam_default)

with tabs[0]:
    if tabs[0].open:
        st.markdown(EXPLAIN["saliency"])
        smooth = st.toggle("SmoothGrad", key="attr_smooth", help=EXPLAIN["smoothgrad"])
        if smooth:
            st.caption(EXPLAIN["smoothgrad"])
            s1, s2 = st.columns(2)
            samples = s1.slider("Noisy copies", 4, 64, 16, 4, key="attr_sg_samples")
            noise = s2.slider(
                "Noise level",
                0.05,
                0.5,
                0.15,
                0.05,
                key="attr_sg_noise",
                help="Noise std as a fraction of the input's value range (max − min).",
            )
            params = dict(target=target, smoothgrad_samples=samples, noise=noise)
            sal = common.long_analysis(
                sel,
                attr.saliency,
                0.0 if sel.has(attr.saliency, **params) else attr.estimate_smoothgrad_seconds(model, samples),
                f"SmoothGrad with {samples} noisy copies",
                "Compute SmoothGrad",
                "attr_sg",
                "SmoothGrad: noisy copies",
                **params,
            )
            heat_panels("SmoothGrad", sal, "sal_smooth")
        else:
            heat_panels("saliency", maps["saliency"], "sal")

with tabs[1]:
    if tabs[1].open:
        st.markdown(EXPLAIN["guided"])
        what = st.radio("Explain", ["the chosen class", "one channel of a layer"], horizontal=True, key="attr_gb_mode")
        if what == "the chosen class":
            gradient_panels("guided backprop", maps["guided backprop"], "gb")
        else:
            st.caption(EXPLAIN["channel"])
            layers = attr.spatial_layers(model)
            l1, l2 = st.columns(2)
            layer = l1.selectbox("Layer", layers, index=layers.index(cam_default), key=f"attr_gb_layer_{sel.model_key}")
            strengths = compute(attr.channel_strengths, "Finding the most active channel…", layer=layer)
            best = int(np.argmax(strengths))
            channel = l2.number_input(
                "Channel",
                0,
                len(strengths) - 1,
                best,
                key=f"attr_gb_channel_{sel.model_key}_{layer}",
                help=f"Default: channel {best}, the most active in {layer} for this image.",
            )
            st.caption(
                f"Channel {channel}: mean activation {strengths[channel]:.3g} "
                f"(the most active, channel {best}, has {strengths[best]:.3g})."
            )
            grad = compute(
                attr.guided_backprop,
                f"Guided backprop for {layer}, channel {channel}…",
                layer=layer,
                channel=int(channel),
            )
            gradient_panels(f"guided backprop {layer} ch {channel}", grad, "gb_ch")

with tabs[2]:
    if tabs[2].open:
        st.markdown(EXPLAIN["gradcam"])
        layers = attr.spatial_layers(model)
        layer = st.selectbox(
            "Layer",
            layers,
            index=layers.index(cam_default),
            key=f"attr_cam_layer_{sel.model_key}",
            help=f"Default: {cam_default}, the rectified output of the last convolution: the most abstract "
            "features that still form a grid.",
        )
        if layer == cam_default:
            cam = maps["Grad-CAM"]
        else:
            cam = compute(attr.grad_cam, f"Grad-CAM at {layer}…", target=target, layer=layer)
        h, w = model.layer(layer).out_shape[1:]
        st.caption(f"{layer} has a {h}×{w} grid: each cell covers about {base.shape[0] / h:.0f} input pixels.")
        heat_panels(f"Grad-CAM {layer}", cam, "cam")
        st.markdown(EXPLAIN["guided_gradcam"])
        gradient_panels(f"guided Grad-CAM {layer}", maps["guided backprop"] * cam[None], "ggc")

with tabs[3]:
    if tabs[3].open:
        st.markdown(EXPLAIN["compare"])
        for col, name in zip(
            st.columns(4), ["saliency", "guided backprop", "guided Grad-CAM", "Grad-CAM"], strict=True
        ):
            values = maps[name]
            if values.ndim == 3:
                picture = signed_picture(values)
            else:
                picture = figures.overlay(base, attr.unit_range(values, clip), opacity, colorscale)
            with col:
                title = f"{name} ({cam_default})" if "Grad-CAM" in name else name
                st.plotly_chart(figures.rgb_figure(picture, title, height=300), width="stretch", key=f"cmp_{name}")
                downloads(name.replace(" ", "_"), picture, values, f"cmp_{name}")
        rho = attr.rank_correlation(maps["saliency"], maps["Grad-CAM"])
        st.caption(
            f"Rank correlation (Spearman) of the saliency and Grad-CAM maps: {rho:.2f} "
            "(1 = they order the pixels the same way, 0 = unrelated)."
        )
