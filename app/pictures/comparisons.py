"""Figures that compare maps: the sanity check's cascade (maps and correlations per stage) and
several networks' maps of one image on one colour scale."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.analyses.attribution import unit_range
from app.pictures.figures import colorize, hide_axes, image_trace, scaled_picture

# One line colour per attribution method, the same in the chart and the grid's row labels.
METHOD_COLOURS = {"gradient": "#E45756", "guided backprop": "#4C78A8", "Grad-CAM": "#54A24B"}


def correlation_chart(stages: tuple[str, ...], correlations: dict[str, np.ndarray], height: int = 340) -> go.Figure:
    """Rank correlation of each method's map with the original network's map, stage by stage.

    The axis runs over the whole -1..1 range, with the zero line marked: a curve that stays near 1
    while the network is destroyed is the warning sign the check looks for.
    """
    fig = go.Figure()
    for name, values in correlations.items():
        fig.add_scatter(
            x=list(stages),
            y=[float(v) for v in values],
            name=name,
            mode="lines+markers",
            line=dict(color=METHOD_COLOURS.get(name), width=3),
            marker=dict(size=8),
            hovertemplate=f"{name}<br>%{{x}}: %{{y:.2f}}<extra></extra>",
        )
    fig.add_hline(y=0, line=dict(color="#888", dash="dot", width=1))
    fig.update_layout(
        xaxis=dict(title="re-initialised so far (cumulative, from the top)", type="category", fixedrange=True),
        yaxis=dict(title="rank correlation with the original map", range=[-1.05, 1.05], fixedrange=True),
        height=height,
        margin=dict(l=10, r=10, t=20, b=10),
        legend=dict(orientation="h", y=1.12, x=0),
    )
    return fig


def cascade_grid(
    maps: dict[str, np.ndarray],
    stages: tuple[str, ...],
    colorscale: str = "Inferno",
    side: int = 96,
    percentile: float = 99.0,
    per_row: int = 7,
    width: int = 600,
) -> go.Figure:
    """One row per method, one column per stage; each map stretched to its own 0..1 (percentile clips).

    Each map gets its own scale, as in the paper: the question is whether the *pattern* survives,
    and a randomised network's maps are often much weaker or stronger than the original's. More
    than `per_row` stages wrap into bands of about equal length of rows, so the tiles stay large enough to read
    on a 1024 px screen. The height is set for a figure about `width` screen pixels wide.
    """
    label_w, label_h, gap = 120, 22, 4
    per_row = math.ceil(len(stages) / math.ceil(len(stages) / per_row))  # balanced: 11 stages -> 6 + 5
    bands = [range(i, min(i + per_row, len(stages))) for i in range(0, len(stages), per_row)]
    band_h = label_h + len(maps) * (side + gap) + gap
    canvas = np.full((len(bands) * band_h, label_w + min(per_row, len(stages)) * (side + gap), 3), 255, np.uint8)
    fig = go.Figure()
    for b, band in enumerate(bands):
        top = b * band_h
        for c, stage in enumerate(band):
            x = label_w + c * (side + gap)
            fig.add_annotation(x=x + side / 2, y=top + label_h / 2, text=stages[stage], showarrow=False)
            for r, stack in enumerate(maps.values()):
                tile = scaled_picture(colorize(unit_range(stack[stage], percentile), colorscale), side)
                y = top + label_h + r * (side + gap)
                canvas[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
        for r, name in enumerate(maps):
            fig.add_annotation(
                x=label_w - 8,
                y=top + label_h + r * (side + gap) + side / 2,
                text=f"<b>{name}</b>",
                showarrow=False,
                xanchor="right",
                font=dict(size=13, color=METHOD_COLOURS.get(name, "#333")),
            )
    fig.add_trace(image_trace(canvas, hoverinfo="skip"))
    hide_axes(fig)
    fig.update_layout(
        margin=dict(l=0, r=0, t=0, b=0), height=round(width * canvas.shape[0] / canvas.shape[1]), font=dict(size=12)
    )
    return fig


def shared_scale_maps(
    maps: list[np.ndarray], titles: list[str], top: float, colorscale: str = "Inferno", height: int = 300
) -> go.Figure:
    """Maps of several networks side by side, all on one colour scale 0..top with one colour bar."""
    fig = make_subplots(rows=1, cols=len(maps), subplot_titles=titles, horizontal_spacing=0.03)
    for i, values in enumerate(maps, start=1):
        fig.add_trace(
            go.Heatmap(
                z=values,
                coloraxis="coloraxis",
                hovertemplate="x %{x}, y %{y}<br>%{z:.2f} × the average pixel<extra></extra>",
            ),
            row=1,
            col=i,
        )
        fig.update_yaxes(autorange="reversed", scaleanchor=f"x{i if i > 1 else ''}", row=1, col=i)
    hide_axes(fig)
    fig.update_annotations(font=dict(size=13))  # the subplot titles
    fig.update_layout(
        coloraxis=dict(
            colorscale=colorscale, cmin=0.0, cmax=top, colorbar=dict(title="× average<br>pixel", thickness=12)
        ),
        height=height,
        margin=dict(l=0, r=0, t=40, b=0),
    )
    return fig
