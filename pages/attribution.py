"""Which pixels matter: gradient maps, the CAM family and Integrated Gradients, each scored for faithfulness."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app.analyses import attribution as attr
from app.analyses import explanations as xp
from app.analyses import faithfulness as faith
from app.analyses import integrated_gradients as ig
from app.pictures import faithfulness as faith_fig
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
    "Grad-CAM++": (
        "Grad-CAM++ weighs each feature map by its *positive* gradients only, each scaled so that every "
        "place where the class is found counts: unlike Grad-CAM's plain average, several small objects of "
        "the same class can all light up, not only the biggest."
    ),
    "LayerCAM": (
        "LayerCAM gives every position of every feature map its own weight, its positive gradient, instead "
        "of one weight per map: the map keeps more detail than Grad-CAM, and it still works at early layers."
    ),
    "Score-CAM": (
        "Score-CAM uses no gradients at all: it lets the network look at the image through each feature map "
        "as a mask, one forward pass per map, and weighs each map by how much the class score it earns. "
        "Slow (one pass per channel), but it cannot be fooled by noisy gradients."
    ),
    "ig": (
        "Integrated Gradients walks in small steps from a *baseline* image with no information (black, a "
        "blurred copy, or noise) to your image and adds up the gradients along the way, times how much each "
        "pixel changed. Unlike a single gradient, the pixel scores add up to the score difference between "
        "your image and the baseline; the *convergence delta* below says how far the sum misses it "
        "(more steps make it smaller)."
    ),
    "faithfulness": faith.MEANING,
    "caveats": faith.CAVEATS,
    "compare": (
        "The same class explained four ways. Gradient maps (left) are sharp but noisy and hardly change "
        "between classes; Grad-CAM (right) is blurry but points at the region the class depends on."
    ),
}

sel = common.page(
    "Which pixels matter?",
    "Attribution maps trace a score back to the input image, to show which pixels the network relied on. "
    "Gradient maps and the CAM family need one forward and one backward pass; Score-CAM and Integrated "
    "Gradients need many. Beside each map, its deletion and insertion curves test it on the network itself.",
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


def score_quick(method: str, layer: str | None, bar_text: str, **options) -> xp.Scored:
    """A method's map and curves (cached; `options` the method's own), with a progress bar while they run."""
    bar = st.progress(0.0, text=bar_text)
    result = sel.analysis(
        xp.scored,
        progress=lambda i, n: bar.progress(i / n, text=bar_text),
        method=method,
        target=target,
        layer=layer,
        **options,
    )
    bar.empty()
    return result


def curve_panel(method: str, layer: str | None, key: str, result: xp.Scored | None = None, **options) -> None:
    """The map's deletion and insertion curves, small. For a big network, where the 100 forward passes
    take longer than LONG_RUN_SECONDS, a button starts them, so the map itself never waits."""
    if result is None:
        params = dict(method=method, target=target, layer=layer, **options)
        seconds = 0.0 if sel.has(xp.scored, **params) else xp.estimate_seconds(model, method, layer, **options)
        if seconds > common.LONG_RUN_SECONDS and not st.button(
            f"Faithfulness curves (about {seconds:.0f} s)",
            key=f"{key}_score",
            help="Delete or insert the map's most important pixels in 50 steps and watch the probability.",
        ):
            st.caption("How faithful is this map? The button plots its deletion and insertion curves.")
            return
        result = score_quick(method, layer, "Deletion and insertion curves", **options)
    st.plotly_chart(faith_fig.curves_figure(result.curves, label), width="stretch", key=f"{key}_curves", theme=None)


def heat_panels(
    name: str,
    values: np.ndarray,
    key: str,
    method: str | None = None,
    layer: str | None = "",
    result: xp.Scored | None = None,
    **options,
) -> None:
    """A [H, W] map alone and overlaid on the network's input, both scaled 0-1 with the clip slider,
    and beside them the curves of `method` (at `layer`, with its `options`; `result` if already computed)."""
    scaled = attr.unit_range(values, clip)
    st.markdown(f"**{name}**")
    alone, over, curves = st.columns(3)
    with alone:
        fig = figures.heatmap(scaled, "alone (0–1)", colorscale)
        st.plotly_chart(fig, width="stretch", key=f"{key}_alone", theme=None)
        downloads(name, figures.colorize(scaled, colorscale), values, f"{key}_alone")
    with over:
        blended = figures.overlay(base, scaled, opacity, colorscale)
        st.plotly_chart(figures.rgb_figure(blended, "over the input"), width="stretch", key=f"{key}_over")
        downloads(f"{name}_overlay", blended, values, f"{key}_over")
    if method is not None:
        with curves:
            curve_panel(method, layer, key, result, **options)


def signed_picture(grad: np.ndarray) -> np.ndarray:
    return (attr.gradient_image(grad, clip) * 255).round().astype(np.uint8)


def gradient_panels(
    name: str, grad: np.ndarray, key: str, method: str | None = None, layer: str = "", result: xp.Scored | None = None
) -> None:
    """A signed [C, H, W] gradient as a picture, its magnitude as a grey map, and the curves if given."""
    picture = signed_picture(grad)
    grey = figures.colorize(attr.unit_range(attr.magnitude(grad), clip), "Greys_r")
    st.markdown(f"**{name}**")
    left, right, curves = st.columns(3)
    with left:
        st.plotly_chart(figures.rgb_figure(picture, "signed"), width="stretch", key=f"{key}_rgb")
        downloads(name, picture, grad, f"{key}_rgb")
    with right:
        st.plotly_chart(figures.rgb_figure(grey, "magnitude"), width="stretch", key=f"{key}_mag")
        downloads(f"{name}_magnitude", grey, attr.magnitude(grad), f"{key}_mag")
    if method is not None:
        with curves:
            curve_panel(method, layer, key, result)


def compute(func, message: str, **params):
    """A cached analysis (instant when this image and these parameters were seen) with a spinner."""
    with st.spinner(message):
        return sel.analysis(func, **params)


def scored(method: str, layer: str, **options) -> xp.Scored:
    """A method's map and its deletion/insertion curves, cached; asks first when it would take long."""
    params = dict(method=method, target=target, layer=layer, **options)
    steps = options.get("path_steps", xp.IG_STEPS)
    seconds = 0.0 if sel.has(xp.scored, **params) else xp.estimate_seconds(model, method, layer, path_steps=steps)
    return common.long_analysis(
        sel,
        xp.scored,
        seconds,
        f"{method} for '{label}' with its faithfulness curves",
        f"Compute {method}",
        f"attr_{method}_{layer}",
        f"{method} and its curves, % done",
        **params,
    )


cam_default = attr.default_cam_layer(model)
# Where each slow map is computed for the ranking (at SLOW_OPTIONS), for the ranking's caption
WHERE = {
    "SmoothGrad": f"SmoothGrad joins once computed with its curves on the Saliency tab ({xp.SMOOTHGRAD_SAMPLES} "
    f"noisy copies, noise {xp.SMOOTHGRAD_NOISE})",
    "Score-CAM": "Score-CAM once computed on the CAM family tab",
    "Integrated Gradients": "Integrated Gradients once computed on its tab with the black baseline",
    "occlusion": "occlusion once its curves are drawn on the Occlusion page (Probability drop, first settings)",
}
# The slow maps join the ranking with these settings (their tabs' and pages' first settings), once computed there
SLOW_OPTIONS = {
    "SmoothGrad": {"layer": None, "samples": xp.SMOOTHGRAD_SAMPLES, "noise": xp.SMOOTHGRAD_NOISE},
    "Score-CAM": {"layer": cam_default},
    "Integrated Gradients": {"layer": cam_default, "baseline": "black", "path_steps": xp.IG_STEPS},
    "occlusion": {"layer": None, **xp.occlusion_defaults(model), "fill": "zero", "occlusion_precision": "auto"},
}
TABS = ["Saliency", "Guided backprop", "Grad-CAM", "CAM family", "Integrated Gradients", "Compare", "Faithfulness"]
tabs = st.tabs(TABS, key="attr_tab", on_change="rerun")
maps = compute(attr.class_maps, f"Computing the maps for '{label}'…", target=target, layer=cam_default)

with tabs[0]:
    if tabs[0].open:
        st.markdown(EXPLAIN["saliency"])
        smooth = st.toggle("SmoothGrad", key="attr_smooth", help=EXPLAIN["smoothgrad"])
        if smooth:
            st.caption(EXPLAIN["smoothgrad"])
            s1, s2 = st.columns(2)
            samples = s1.slider("Noisy copies", 4, 64, xp.SMOOTHGRAD_SAMPLES, 4, key="attr_sg_samples")
            noise = s2.slider(
                "Noise level",
                0.05,
                0.5,
                xp.SMOOTHGRAD_NOISE,
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
            heat_panels("SmoothGrad", sal, "sal_smooth", "SmoothGrad", None, samples=samples, noise=noise)
        else:
            heat_panels("saliency", maps["saliency"], "sal", "saliency", cam_default)

with tabs[1]:
    if tabs[1].open:
        st.markdown(EXPLAIN["guided"])
        what = st.radio("Explain", ["the chosen class", "one channel of a layer"], horizontal=True, key="attr_gb_mode")
        if what == "the chosen class":
            gradient_panels("guided backprop", maps["guided backprop"], "gb", "guided backprop", cam_default)
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
        heat_panels(f"Grad-CAM {layer}", cam, "cam", "Grad-CAM", layer)
        st.markdown(EXPLAIN["guided_gradcam"])
        gradient_panels(
            f"guided Grad-CAM {layer}", maps["guided backprop"] * cam[None], "ggc", "guided Grad-CAM", layer
        )

with tabs[3]:
    if tabs[3].open:
        method = st.radio("Method", ["Grad-CAM++", "LayerCAM", "Score-CAM"], horizontal=True, key="attr_cam_family")
        st.markdown(EXPLAIN[method])
        layers = attr.spatial_layers(model)
        layer = st.selectbox(
            "Layer",
            layers,
            index=layers.index(cam_default),
            key=f"attr_family_layer_{sel.model_key}",
            help=f"Default: {cam_default}, the same layer as Grad-CAM's, so the maps compare directly.",
        )
        result = scored(method, layer) if method == "Score-CAM" else score_quick(method, layer, f"{method}…")
        heat_panels(f"{method} {layer}", result.values, "family", method, layer, result)

with tabs[4]:
    if tabs[4].open:
        st.markdown(EXPLAIN["ig"])
        b1, b2 = st.columns(2)
        baseline = b1.radio(
            "Baseline",
            ig.BASELINES,
            horizontal=True,
            key="attr_ig_baseline",
            help="The image the path starts from: what 'no information' means. Black and noise are the classic "
            "choices; a blurred copy keeps the colours and removes only the detail.",
        )
        path_steps = b2.slider("Steps along the path", 8, 128, xp.IG_STEPS, 8, key="attr_ig_steps")
        result = scored("Integrated Gradients", cam_default, baseline=baseline, path_steps=path_steps)
        detail = result.ig
        st.caption(
            f"Score of '{label}' (logit): image {detail.score:.3f}, {baseline} baseline {detail.baseline_score:.3f}; "
            f"sum of the attributions {detail.score - detail.baseline_score + detail.delta:.3f}. "
            f"**Convergence delta {detail.delta:+.3g}** ({detail.relative_delta:.1%} of the difference)"
            + (": enough steps." if detail.relative_delta < 0.05 else ": try more steps.")
        )
        gradient_panels(
            f"Integrated Gradients ({baseline})", result.values, "ig", "Integrated Gradients", cam_default, result
        )

with tabs[5]:
    if tabs[5].open:
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

with tabs[6]:
    if tabs[6].open:
        st.markdown(EXPLAIN["faithfulness"])
        quick = [m for m in xp.METHODS if m not in xp.SLOW]
        ready = [m for m in xp.SLOW if sel.has(xp.scored, method=m, target=target, **SLOW_OPTIONS[m])]
        todo = [m for m in quick if not sel.has(xp.scored, method=m, target=target, layer=cam_default)]
        common.confirm_long_run(
            sum(xp.estimate_seconds(model, m, cam_default) for m in todo),
            f"Scoring {len(todo)} methods on {model.title}",
            "Score the methods",
            "attr_rank_start",
        )
        results = [score_quick(m, cam_default, f"Scoring {m}…") for m in quick]
        results += [scored(m, **SLOW_OPTIONS[m]) for m in ready]
        rows = sorted(results, key=lambda r: -r.curves.score)
        st.dataframe(
            {
                "rank": list(range(1, len(rows) + 1)),
                "method": [r.method for r in rows],
                "insertion area ↑": [round(r.curves.insertion_auc, 3) for r in rows],
                "deletion area ↓": [round(r.curves.deletion_auc, 3) for r in rows],
                "score (ins − del) ↑": [round(r.curves.score, 3) for r in rows],
            },
            hide_index=True,
            key="attr_rank",
        )
        missing = [m for m in xp.SLOW if m not in ready]
        st.caption(
            f"Ranked for '{label}' on this image, CAMs at {cam_default}, {faith.STEPS} steps."
            + (
                f" Not yet in the table, as they take many passes: {'; '.join(WHERE[m] for m in missing)}."
                if missing
                else ""
            )
        )
        cols = st.columns(3)
        for i, r in enumerate(rows):
            with cols[i % 3]:
                st.plotly_chart(
                    faith_fig.curves_figure(r.curves, label, f"{i + 1}. {r.method}"),
                    width="stretch",
                    key=f"rank_curves_{i}",
                    theme=None,
                )
        st.info(EXPLAIN["caveats"], icon=":material/warning:")
