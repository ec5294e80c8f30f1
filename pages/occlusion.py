"""Occlusion: hide one square of the image at a time and watch the prediction (Zeiler & Fergus 2014)."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app.analyses import explanations as xp
from app.analyses import faithfulness as faith
from app.analyses import occlusion as occ
from app.pictures import faithfulness as faith_fig
from app.pictures import figures
from pages import common

# The class map takes the column's width up to this many pixels (room for its legend of classes): on a
# wide screen no more, or the square map sat in the middle and its legend far off at the right edge.
CLASS_MAP_WIDTH = 820

sel = common.page(
    "Occlusion",
    "Slide a patch over the image, hiding one square at a time, and run the network on every copy. Where "
    "hiding the image makes the score of a class fall, the network was using that region to recognise it.",
)
model = sel.model

predicted = int(np.argmax(sel.probabilities()))
size = model.input_size
big = size > 64
windows = [8, 16, 24, 32, 48, 64, 96] if big else [2, 3, 4, 5, 6, 7, 8, 10, 14]
first = xp.occlusion_defaults(model)  # the settings at which the Attribution page's ranking takes this map in

# Two rows of two: in one row of four, a 1024 px projector cut the Fill choice's text.
c1, c2 = st.columns(2)
c3, c4 = st.columns(2)
window = c1.select_slider("Window (px)", windows, value=first["window"], key=f"occ_window_{sel.model_key}")
strides = [s for s in (1, 2, 4, 8, 12, 16, 24, 32, 48, 64) if s <= window]
stride = c2.select_slider(
    "Stride (px)",
    strides,
    value=min(first["stride"], strides[-1]),
    key=f"occ_stride_{sel.model_key}_{window}",
    help="How far the window moves between copies. Smaller strides give finer maps but take longer.",
)
fills = occ.fill_names(model)
fill = c3.selectbox(
    "Fill",
    list(fills),
    format_func=fills.get,
    key="occ_fill",
    help=f"What the hidden square is replaced with. “{fills['zero']}” is the input 0 after normalisation; "
    f"this network's mean and std are {model.normalisation_origin()}.",
)
with c4:
    target = common.class_picker(sel, "Class", key=f"occ_target_{sel.model_key}")
exact = st.toggle(
    "Exact fp32",
    key="occ_exact",
    help="Full precision, identical to captum's Occlusion. The default uses bfloat16 on CPUs that have it, "
    "for networks where it keeps the maps (several times faster, same maps to the eye); EfficientNet-Lite0 "
    "always runs in full precision.",
)
precision = "exact" if exact else "auto"
if occ.engine_name(model) == "dense":  # why this run is slow, before it starts; the footer says how each run went
    st.caption(occ.engine_words("dense", model.title))
n_y, n_x = occ.occluder_boxes((size, size), window, stride).shape[:2]
params = dict(window=window, stride=stride, baseline=fill, precision=precision)
run_key = (sel.input_key, *params.values())
done = st.session_state.setdefault("occ_done", set())

if run_key not in done:
    result = common.long_analysis(
        sel,
        occ.occlusion_map,
        occ.estimate_seconds(model, window, stride, precision),
        f"Occluding {n_y * n_x} positions (a larger stride is quicker)",
        f"Compute {n_y * n_x} occluded copies",
        "occ",
        "Occluded copies",
        **params,
    )
    done.add(run_key)
else:
    result = sel.analysis(occ.occlusion_map, **params)

label = model.labels[target]
base = np.asarray(common.model_input_rgb(sel))
top_idx, top_p = occ.top_k_map(result, 3)
hover = np.array(
    [
        [
            "<br>".join(f"{model.labels[c]}: {p:.1%}" for c, p in zip(top_idx[i, j], top_p[i, j], strict=True))
            for j in range(n_x)
        ]
        for i in range(n_y)
    ]
)
boxes = result.boxes
stem = f"{sel.model_key}_occlusion_w{window}_s{stride}_{fill}_{label}"


def downloads(name: str, picture: np.ndarray, values: np.ndarray) -> None:
    common.download_pair(f"{stem}_{name}", picture, values, f"occ_{name}", name.replace("_", " "))


params_for_curves = dict(window=window, stride=stride, fill=fill, occlusion_precision=precision)


def faithfulness_curves(key: str) -> None:
    """The drop map's deletion and insertion curves (the Attribution page's test of every map), small. When
    they would take longer than LONG_RUN_SECONDS a button starts them, so the maps never wait for them."""
    curve_params = dict(method="occlusion", target=target, layer=None, **params_for_curves)
    if not sel.has(xp.scored, **curve_params):
        seconds = xp.estimate_seconds(model, "occlusion", **params_for_curves)
        if seconds > common.LONG_RUN_SECONDS and not st.button(
            f"Faithfulness curves (about {seconds:.0f} s)",
            key=f"{key}_start",
            help="Delete or insert the drop map's most important pixels in 50 steps and watch the probability.",
        ):
            st.caption("How faithful is this map? The button plots its deletion and insertion curves.")
            return
    text = "The occluded copies again, then the deletion and insertion curves"
    bar = st.progress(0.0, text=text)
    scored = sel.analysis(xp.scored, progress=lambda i, n: bar.progress(i / n, text=text), **curve_params)
    bar.empty()
    st.plotly_chart(faith_fig.curves_figure(scored.curves, label), width="stretch", key=f"{key}_fig", theme=None)
    with st.expander("What the curves say, and their caveats"):
        st.markdown(faith.MEANING)
        st.markdown(
            faith.CAVEATS + " Occlusion is itself a deletion test (hiding squares), so it has a head start "
            "here, most of all with the blurred fill the curves use too."
        )


def grid_figure(values: np.ndarray, title: str, colorscale: str, value_name: str, zmid: float | None = None):
    return figures.occlusion_grid(values, boxes, hover, title, colorscale, value_name, zmid)


tab_score, tab_drop, tab_class, tab_cell = st.tabs(
    ["Class-score map", "Probability drop", "Predicted class", "One position"], key="occ_tab", on_change="rerun"
)

with tab_score:
    if tab_score.open:
        # The map and the picture side by side (the score choice beside them), so both are on the first
        # screen of a 768 px projector.
        left, right = st.columns([3, 2])
        kind = right.radio("Score", ["probability", "logit"], horizontal=True, key="occ_score")
        values = occ.target_prob_map(result, target) if kind == "probability" else result.logits[..., target]
        left.plotly_chart(
            grid_figure(values, f"{label}:<br>{kind} with the window here", "Viridis", kind),
            width="stretch",
            key="occ_score_fig",
            theme=None,
        )
        right.plotly_chart(
            figures.rgb_figure(base, "the network's input", height=300), width="stretch", key="occ_input"
        )
        base_value = occ.base_probabilities(result)[target] if kind == "probability" else result.base_logits[target]
        right.caption(
            f"Each cell is one occluded copy, placed where the centre of the hidden square was. Unoccluded, the "
            f"{kind} of '{label}' is {base_value:.4g}; dark cells are positions where hiding the image lowers it."
        )
        downloads(f"{kind}_map", figures.colorize(values, "Viridis"), values)

with tab_drop:
    if tab_drop.open:
        drop = occ.prob_drop_map(result, target)
        pixels = occ.pixel_map(result, drop, (size, size))
        opacity = st.slider("Overlay opacity", 0.0, 1.0, 0.55, 0.05, key="occ_opacity")
        left, right = st.columns([3, 2])
        left.plotly_chart(
            grid_figure(drop, f"drop in P({label})", figures.SIGNED_SCALE, "drop", zmid=0.0),
            width="stretch",
            key="occ_drop_fig",
            theme=None,
        )
        blended = figures.overlay(base, pixels, opacity, signed=True)
        right.plotly_chart(
            figures.rgb_figure(blended, "over the input", height=300), width="stretch", key="occ_drop_over"
        )
        right.caption(
            "How much the probability of the class falls when each region is hidden "
            f"({figures.SIGNED_WORDS}: red where it falls, blue where it rises). "
            "The overlay gives every pixel the average drop over the windows that covered it, so the red "
            "regions are the ones the network needed most."
        )
        downloads("drop_map", figures.colorize(drop, signed=True), drop)
        downloads("drop_overlay", blended, pixels)
        with right:
            faithfulness_curves("occ_curves")

with tab_class:
    if tab_class.open:
        classes = occ.predicted_class_map(result)
        fig, picture = figures.class_grid(classes, boxes, hover, model.labels, "predicted class with the window here")
        st.plotly_chart(fig, width=CLASS_MAP_WIDTH, key="occ_class_fig", theme=None)
        downloads("class_map", picture, classes)
        st.caption(
            f"Unoccluded, the network predicts '{model.labels[predicted]}'. Each colour is the class it predicts "
            "when the square hides that position; a region that changes the colour is one the prediction depends on."
        )

with tab_cell:
    if tab_cell.open:
        drop = occ.prob_drop_map(result, target)
        worst = np.unravel_index(int(np.argmax(drop)), drop.shape)
        r1, r2 = st.columns(2)
        iy = r1.slider("Row of positions", 0, n_y - 1, int(worst[0]), key=f"occ_row_{n_y}")
        ix = r2.slider("Column of positions", 0, n_x - 1, int(worst[1]), key=f"occ_col_{n_x}")
        image = occ.occluded_image(model, sel.x, result, iy, ix, fill)
        left, right = st.columns(2)
        y0, x0, y1, x1 = (int(v) for v in boxes[iy, ix])
        left.plotly_chart(
            figures.rgb_figure(image, f"hidden: rows {y0}–{y1 - 1}, cols {x0}–{x1 - 1}"),
            width="stretch",
            key="occ_cell_img",
        )
        pairs = [(model.labels[c], float(p)) for c, p in zip(top_idx[iy, ix], top_p[iy, ix], strict=True)]
        right.plotly_chart(
            figures.top_k_bar(pairs, "top 3 with this square hidden"), width="stretch", key="occ_cell_bar"
        )
        right.caption(
            f"P({label}) = {occ.target_prob_map(result, target)[iy, ix]:.1%} here, "
            f"{occ.base_probabilities(result)[target]:.1%} without the square. "
            "The sliders start at the position that lowers it most."
        )

st.caption(
    f"{n_y * n_x} occluded copies ({n_y}×{n_x} positions), computed in {result.precision}. "
    + occ.engine_words(result.engine, model.title)
)
