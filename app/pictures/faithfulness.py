"""The small deletion/insertion curve figure shown beside each attribution map."""

from __future__ import annotations

import plotly.graph_objects as go

from app.analyses.faithfulness import Curves

DELETION_COLOUR = "#d62728"
INSERTION_COLOUR = "#2ca02c"


def curves_figure(curves: Curves, label: str, title: str = "Deletion / insertion", height: int = 280) -> go.Figure:
    """Probability of `label` as the map's most important pixels are removed (deletion, lower area is
    better) or put back onto a blurred image (insertion, higher is better); areas in the legend."""
    percent = curves.fractions * 100
    fig = go.Figure()
    for name, values, colour, area in (
        ("deletion", curves.deletion, DELETION_COLOUR, curves.deletion_auc),
        ("insertion", curves.insertion, INSERTION_COLOUR, curves.insertion_auc),
    ):
        fig.add_trace(
            go.Scatter(
                x=percent,
                y=values,
                mode="lines",
                name=f"{name} {area:.2f}",
                line=dict(color=colour, width=2),
                hovertemplate=f"{name}: p({label}) = %{{y:.3f}}<extra></extra>",
            )
        )
    fig.update_xaxes(title=dict(text="% of pixels", standoff=4), range=[0, 100], tickvals=[0, 50, 100])
    fig.update_yaxes(title=dict(text="probability", standoff=2), range=[0, 1.02], tickvals=[0, 0.5, 1])
    fig.update_layout(
        title=dict(text=title, font=dict(size=13)),
        height=height,
        margin=dict(l=45, r=20, t=36, b=30),
        legend=dict(orientation="h", yanchor="top", y=-0.28, x=0, title_text="area:"),
        font=dict(size=11),
        hovermode="x unified",
    )
    return fig
