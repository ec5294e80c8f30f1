"""Occlusion: hide one square of the image at a time and watch the prediction (Zeiler & Fergus 2014)."""

from __future__ import annotations

import io

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from PIL import Image
from plotly.colors import qualitative

from app import figures
from app import occlusion as occ
from pages import common

FILLS = {
    "zero": "dataset mean colour (0 after normalisation)",
    "mean": "this image's mean colour",
    "grey": "mid-grey",
    "blur": "blurred copy of the image",
}
PALETTE = qualitative.Dark24  # one colour per class present in the predicted-class map
WARN_SECONDS = 8.0

sel = common.selection()
model = sel.model
st.title("Occlusion")
st.caption(
    "Slide a patch over the image, hiding one square at a time, and run the network on every copy. Where "
    "hiding the image makes the score of a class fall, the network was using that region to recognise it."
)

probs = sel.probabilities()
predicted = int(np.argmax(probs))
size = model.input_size
big = size > 64
windows = [8, 16, 24, 32, 48, 64, 96] if big else [2, 3, 4, 5, 6, 7, 8, 10, 14]

c1, c2, c3, c4 = st.columns([1, 1, 1.4, 2])
window = c1.select_slider("Window (px)", windows, value=32 if big else 5, key=f"occ_window_{sel.model_name}")
strides = [s for s in (1, 2, 4, 8, 12, 16, 24, 32, 48, 64) if s <= window]
stride = c2.select_slider(
    "Stride (px)",
    strides,
    value=min(16 if big else 1, strides[-1]),
    key=f"occ_stride_{sel.model_name}_{window}",
    help="How far the window moves between copies. Smaller strides give finer maps but take longer.",
)
fill = c3.selectbox(
    "Fill", list(FILLS), format_func=FILLS.get, key="occ_fill", help="What the hidden square is replaced with."
)
target = c4.selectbox(
    "Class",
    range(len(model.labels)),
    index=predicted,
    format_func=lambda i: f"{model.labels[i]} ({probs[i]:.1%})" + (" · predicted" if i == predicted else ""),
    key=f"occ_target_{sel.model_name}",
    help="Type to search. Defaults to the network's prediction.",
)
exact = st.toggle(
    "Exact fp32",
    key="occ_exact",
    help="Full precision, identical to captum's Occlusion. The default uses bfloat16 on CPUs that have it: "
    "several times faster, same maps to the eye.",
)
precision = "exact" if exact else "auto"
n_y, n_x = occ.occluder_boxes((size, size), window, stride).shape[:2]
params = dict(window=window, stride=stride, baseline=fill, precision=precision)
run_key = (sel.input_key, *params.values())
done = st.session_state.setdefault("occ_done", set())

if run_key not in done:
    seconds = occ.estimate_seconds(model, window, stride, precision)
    if seconds > WARN_SECONDS:
        st.warning(
            f"{n_y * n_x} positions: this will take about {seconds:.0f} s (other users share the computer). "
            "A larger stride is quicker.",
            icon=":material/timer:",
        )
        if not st.button(f"Compute {n_y * n_x} occluded copies", type="primary"):
            st.stop()
    bar = st.progress(0.0, text="Occluding…")
    result = sel.analysis(
        "app.occlusion:occlusion_map",
        progress=lambda i, n: bar.progress(i / n, text=f"Occluded copies: {i} of {n}"),
        **params,
    )
    bar.empty()
    done.add(run_key)
else:
    result = sel.analysis("app.occlusion:occlusion_map", **params)

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
box_text = np.vectorize(lambda a, b, c, d: f"rows {a}–{c - 1}, cols {b}–{d - 1}")(*np.moveaxis(boxes, -1, 0))
stem = f"{sel.model_name}_occlusion_w{window}_s{stride}_{fill}_{label}".replace(" ", "_").replace("/", "-")


def png_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def npy_bytes(values: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, values)
    return buf.getvalue()


def downloads(name: str, picture: np.ndarray, values: np.ndarray) -> None:
    left, right = st.columns(2)
    left.download_button(
        "PNG", png_bytes(picture), f"{stem}_{name}.png", "image/png", key=f"occ_{name}_png", on_click="ignore"
    )
    right.download_button(
        ".npy",
        npy_bytes(values),
        f"{stem}_{name}.npy",
        "application/octet-stream",
        key=f"occ_{name}_npy",
        on_click="ignore",
    )


def grid_figure(values: np.ndarray, title: str, colorscale: str, value_name: str, zmid: float | None = None):
    """One cell per occluder position, centred where the window's centre was; hover: box and top-3."""
    cy = (boxes[:, 0, 0] + boxes[:, 0, 2] - 1) / 2
    cx = (boxes[0, :, 1] + boxes[0, :, 3] - 1) / 2
    fig = go.Figure(
        go.Heatmap(
            z=values,
            x=cx,
            y=cy,
            customdata=np.stack([box_text, hover], axis=-1),
            colorscale=colorscale,
            zmid=zmid,
            hovertemplate=f"{value_name} %{{z:.4g}}<br>window %{{customdata[0]}}<br>%{{customdata[1]}}<extra></extra>",
            colorbar=dict(thickness=12),
        )
    )
    fig.update_yaxes(autorange="reversed", scaleanchor="x", constrain="domain", title="window centre y (px)")
    fig.update_xaxes(constrain="domain", title="window centre x (px)")
    fig.update_layout(title=title, margin=dict(l=60, r=0, t=40, b=50), height=460)
    return fig


tab_score, tab_drop, tab_class, tab_cell = st.tabs(
    ["Class-score map", "Probability drop", "Predicted class", "One position"], key="occ_tab", on_change="rerun"
)

with tab_score:
    if tab_score.open:
        kind = st.radio("Score", ["probability", "logit"], horizontal=True, key="occ_score")
        values = occ.target_prob_map(result, target) if kind == "probability" else result.logits[..., target]
        left, right = st.columns(2)
        with left:
            st.plotly_chart(
                grid_figure(values, f"{label}: {kind} with the window here", "Viridis", kind),
                width="stretch",
                key="occ_score_fig",
                theme=None,
            )
            downloads(f"{kind}_map", figures.colorize(values, "Viridis"), values)
        with right:
            st.plotly_chart(figures.rgb_figure(base, "the network's input"), width="stretch", key="occ_input")
        base_value = occ.base_probabilities(result)[target] if kind == "probability" else result.base_logits[target]
        st.caption(
            f"Each cell is one occluded copy, placed where the centre of the hidden square was. Unoccluded, the "
            f"{kind} of '{label}' is {base_value:.4g}; dark cells are positions where hiding the image lowers it."
        )

with tab_drop:
    if tab_drop.open:
        drop = occ.prob_drop_map(result, target)
        pixels = occ.pixel_map(result, drop, (size, size))
        opacity = st.slider("Overlay opacity", 0.0, 1.0, 0.55, 0.05, key="occ_opacity")
        left, right = st.columns(2)
        with left:
            st.plotly_chart(
                grid_figure(drop, f"drop in P({label})", figures.SIGNED_SCALE, "drop", zmid=0.0),
                width="stretch",
                key="occ_drop_fig",
                theme=None,
            )
            downloads("drop_map", figures.colorize(drop, figures.SIGNED_SCALE), drop)
        with right:
            blended = figures.overlay(base, pixels, opacity, "Jet")
            st.plotly_chart(figures.rgb_figure(blended, "over the input"), width="stretch", key="occ_drop_over")
            downloads("drop_overlay", blended, pixels)
        st.caption(
            "How much the probability of the class falls when each region is hidden "
            f"({figures.SIGNED_WORDS}: red where it falls, blue where it rises). "
            "The overlay gives every pixel the average drop over the windows that covered it, so the red "
            "regions are the ones the network needed most."
        )

with tab_class:
    if tab_class.open:
        classes = occ.predicted_class_map(result)
        present, codes = np.unique(classes, return_inverse=True)
        codes = codes.reshape(classes.shape)
        colours = [PALETTE[i % len(PALETTE)] for i in range(len(present))]
        steps = np.linspace(0, 1, len(present) + 1)
        scale = [pair for i, c in enumerate(colours) for pair in ((steps[i], c), (steps[i + 1], c))]
        fig = grid_figure(codes, "predicted class with the window here", scale, "class")
        fig.data[0].update(zmin=-0.5, zmax=len(present) - 0.5, showscale=False)
        fig.data[0].hovertemplate = "window %{customdata[0]}<br>%{customdata[1]}<extra></extra>"
        for c, colour in zip(present, colours, strict=True):
            share = (classes == c).mean()
            fig.add_trace(
                go.Scatter(
                    x=[None],
                    y=[None],
                    mode="markers",
                    marker=dict(size=12, color=colour, symbol="square"),
                    name=f"{model.labels[c]} ({share:.0%})",
                    showlegend=True,
                )
            )
        fig.update_layout(legend=dict(title="prediction"))
        st.plotly_chart(fig, width="stretch", key="occ_class_fig", theme=None)
        lut = np.array([[int(colours[i][k : k + 2], 16) for k in (1, 3, 5)] for i in range(len(present))], np.uint8)
        downloads("class_map", lut[codes], classes)
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
    f"{n_y * n_x} occluded copies ({n_y}×{n_x} positions), computed in {result.precision}: only the part of each "
    "layer that the square changes is recomputed, so this is several times faster than running every copy whole."
)
