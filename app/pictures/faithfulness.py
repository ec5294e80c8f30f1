"""The small deletion/insertion curve figure shown beside each attribution map."""

from __future__ import annotations

import plotly.graph_objects as go

from app.analyses.faithfulness import Curves

DELETION_COLOUR = "#d62728"
INSERTION_COLOUR = "#2ca02c"


def curves_figure(curves: Curves, label: str, height: int = 260) -> go.Figure:
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
                name=f"{name} · area {area:.2f}",
                line=dict(color=colour, width=2),
                hovertemplate=f"{name}: %{{x:.0f}} % of pixels → p = %{{y:.3f}}<extra></extra>",
            )
        )
    fig.update_xaxes(title="% of pixels changed (most important first)", range=[0, 100])
    fig.update_yaxes(title=f"p({label})", range=[0, 1.02])
    fig.update_layout(
        title="Deletion / insertion",
        height=height,
        margin=dict(l=50, r=10, t=40, b=40),
        legend=dict(orientation="h", yanchor="bottom", y=-0.75, x=0),
        font=dict(size=11),
    )
    return fig
