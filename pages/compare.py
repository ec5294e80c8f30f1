"""Models side by side: one image through two or three networks, their top-5 and the same map on one scale."""

from __future__ import annotations

import streamlit as st
from PIL import Image

from app.analyses import compare
from app.base.errors import LensError
from app.networks.models import offered_models
from app.pictures import comparisons
from pages import common

EXPLAIN = (
    "Different networks can give different answers for the same picture, and look at different parts of it. "
    "Each network first prepares the image its own way (below each name: the steps it was trained with), "
    "then predicts; the map shows which pixels drove its top class."
)
SCALE = (
    "To make the maps comparable, each one is enlarged to the same size and divided by its own average, so "
    "a value says how many times more than an average pixel this pixel counts for that network (1 = average). "
    "All maps use one colour scale: the same colour means the same in every network. A map concentrated on "
    "a small region is bright there; a map spread over the whole picture is dim everywhere."
)
METHOD_HELP = {
    "saliency": "how much each pixel's change would move the class score",
    "guided backprop": "the edges that push the class score up",
    "Grad-CAM": "where in the last convolutional grid the class evidence is",
}
THUMB = 96  # screen pixels of one pre-processing step


def _names() -> dict[str, str]:
    return offered_models()[0]  # the sidebar says what is wrong with the teacher's file or offer


def _thumb(image: Image.Image, side: int) -> Image.Image:
    """A step enlarged or shrunk to `side` pixels on its longer side (28 px steps keep crisp pixels)."""
    f = side / max(image.size)
    size = (max(1, round(image.width * f)), max(1, round(image.height * f)))
    return image.resize(size, Image.Resampling.NEAREST if f >= 1 else Image.Resampling.LANCZOS)


sel = common.page(
    "Models side by side",
    "One image, two or three networks: what each predicts and where each one looks.",
)
st.markdown(EXPLAIN)
names = _names()
others = [n for n in names if n != sel.model_key]
default = ([sel.model_key] if sel.model_key in names else []) + others
left, right = st.columns([3, 2])
chosen = left.multiselect(
    "Networks (two or three)",
    list(names),
    default=default[:3],
    format_func=names.get,
    max_selections=3,
    key="compare_models",
)
method = right.radio(
    "Map",
    compare.METHODS,
    horizontal=True,
    key="compare_method",
    help="; ".join(f"{m}: {h}" for m, h in METHOD_HELP.items()),
)
if len(chosen) < 2:
    st.info("Choose at least two networks to compare.", icon=":material/compare:")
    st.stop()

views: list[tuple[common.Selection, compare.View]] = []
columns = st.columns(len(chosen), gap="medium")
for col, name in zip(columns, chosen, strict=True):
    with col:
        st.markdown(f"#### {names[name]}")
        try:
            other = common.for_model(sel, name)
        except LensError as exc:
            common.show_lens_error(exc)
            continue
        model = other.model
        if not model.trained:
            st.caption(":orange[**untrained**: random weights, meaningless predictions]")
        st.image(_thumb(other.steps[-1].image, 160), caption=f"what it sees: {other.steps[-1].detail}")
        st.caption(
            "Pre-processing: "
            + " → ".join(step.name for step in other.steps)
            + f" → (pixel/255 − mean) / std, mean ({', '.join(f'{m:.3f}' for m in model.mean)}), "
            f"std ({', '.join(f'{s:.3f}' for s in model.std)})"
        )
        with st.expander("Every step"):
            st.image(
                [_thumb(step.image, THUMB) for step in other.steps],
                caption=[f"{step.name}: {step.detail}" for step in other.steps],
                width=THUMB,
            )
        with st.spinner(f"{model.title}: predicting and computing the map…"):
            view = other.analysis(compare.model_view, method=method)
        views.append((other, view))
        st.markdown(
            "**Top-5**\n\n" + "\n".join(f"{i}. {label}: **{p:.1%}**" for i, (label, p) in enumerate(view.top5, 1))
        )

if len(views) >= 2:
    st.subheader(f"{method[0].upper() + method[1:]} of each network's top class, on one colour scale")
    shares, top = compare.shared_scale([view.raw for _, view in views])
    titles = [view.top5[0][0] for _, view in views]
    st.plotly_chart(comparisons.shared_scale_maps(shares, titles, top), width="stretch", key="compare_maps")
    st.caption("Left to right in the order of the columns above, each titled with that network's top class. " + SCALE)
