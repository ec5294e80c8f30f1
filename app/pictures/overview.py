"""The network overview diagram: the input, then each stage's most active feature maps, clickable."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.analyses.overview import Overview, Stage
from app.pictures.figures import colorize, image_trace, resize_nearest, scaled_picture

TILE = 56  # screen pixels per thumbnail side in the figure's image data (nearest-neighbour upscaled)
HIGHLIGHT = "#ff7f0e"  # the selected map
FEEDER = "#17becf"  # maps of the stage before that feed it most


def tile(values: np.ndarray) -> np.ndarray:
    """One feature map as a TILE x TILE RGB picture, stretched to its own range (Viridis)."""
    return colorize(resize_nearest(np.asarray(values, dtype=np.float32), (TILE, TILE)), "Viridis")


def stage_title(stage: Stage) -> str:
    c, h, w = stage.shape
    block, _, last = stage.layer.rpartition(".")  # long module paths on two lines, or the columns' titles overlap
    name = f"<b>{block}</b><br><b>.{last}</b>" if block else f"<b>{stage.layer}</b>"
    parts = [name, f"{c} ch · {h}×{w}"]
    if stage.additions:
        parts.append(f"{len(stage.blocks)} blocks, {stage.additions} +")
    elif stage.blocks:
        parts.append(f"{len(stage.blocks)} blocks")
    return "<br>".join(parts)


def network_figure(
    ov: Overview,
    picture: np.ndarray,
    selected: tuple[str, int] | None = None,
    feeders: frozenset[tuple[str, int]] = frozenset(),
) -> go.Figure:
    """Input on the left, one column per stage with its most active channels top to bottom.

    Each thumbnail carries (layer, channel) as customdata on an almost invisible marker, so a
    click selects it (Streamlit's on_select); the selected one gets an orange frame, and those
    of `feeders` that are on show (the channels feeding it most) a blue one."""
    rows = max(len(s.channels) for s in ov.stages)
    cols = len(ov.stages) + 1
    grid_titles = [
        ("<b>input</b>" if c == 0 else stage_title(ov.stages[c - 1])) if r == 0 else ""
        for r in range(rows)
        for c in range(cols)
    ]
    fig = make_subplots(rows, cols, subplot_titles=grid_titles, horizontal_spacing=0.02, vertical_spacing=0.03)
    fig.add_trace(image_trace(scaled_picture(picture, TILE), hoverinfo="skip"), 1, 1)
    labels = [a.to_plotly_json() | {"font": {"size": 11}} for a in fig.layout.annotations]  # the column titles
    for c, stage in enumerate(ov.stages, start=2):
        for r, (channel, strength) in enumerate(zip(stage.channels, stage.strengths, strict=True), start=1):
            fig.add_trace(image_trace(tile(stage.maps[r - 1]), hoverinfo="skip"), r, c)
            fig.add_trace(
                go.Scatter(
                    x=[TILE / 2],
                    y=[TILE / 2],
                    mode="markers",
                    marker=dict(size=TILE, opacity=0.01, symbol="square"),
                    customdata=[[stage.layer, channel]],
                    hovertemplate=f"{stage.layer}, channel {channel}<br>mean {strength:.3g}"
                    "<br>click: follow it<extra></extra>",
                    showlegend=False,
                ),
                r,
                c,
            )
            axes = fig.get_subplot(r, c)
            labels.append(  # the channel number, inside the tile's bottom edge, readable on any colour
                dict(
                    x=TILE / 2,
                    y=TILE - 2,
                    xref=axes.xaxis.plotly_name.replace("axis", ""),
                    yref=axes.yaxis.plotly_name.replace("axis", ""),
                    text=str(channel),
                    showarrow=False,
                    yanchor="bottom",
                    font=dict(color="white", size=11),
                    bgcolor="rgba(0,0,0,0.55)",
                )
            )
            unit = (stage.layer, channel)
            frame = HIGHLIGHT if unit == selected else FEEDER if unit in feeders else None
            if frame:
                box = dict(type="rect", x0=-1, y0=-1, x1=TILE, y1=TILE, line=dict(color=frame, width=4))
                fig.add_shape(**box, row=r, col=c)
    fig.layout.annotations = labels  # at once: one add_annotation per tile took a third of a second
    fig.update_xaxes(visible=False, range=[-2, TILE + 1])
    fig.update_yaxes(visible=False, range=[TILE + 1, -2])
    top = 110 if any("." in s.layer for s in ov.stages) else 70  # room for two-line layer names
    fig.update_layout(
        height=120 + 96 * rows, margin=dict(l=4, r=4, t=top, b=4), clickmode="event+select", dragmode=False
    )
    return fig
