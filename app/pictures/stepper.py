"""Animated, step-by-step figures: a window sliding over a grid, one Plotly frame per step.

Every step is a Plotly frame and the Play/Pause buttons, the speed buttons and the
step slider are Plotly's own, so the animation runs entirely in the browser: once the
figure has arrived, playing it costs the server nothing, however many students watch.
Each frame redraws only the traces that change (the window outline, the products,
the output so far), never the input grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.analyses.stepper import Pooling, Sweep
from app.pictures.figures import SIGNED_SCALE

WINDOW_COLOUR = "#111111"  # thick black outlines read on red, blue and white cells alike
WINNER_COLOUR = "#F5B800"
# Playing speeds in steps per second; the fastest is the 10 frames per second.
SPEEDS = (1, 3, 10)


def _text(values: np.ndarray) -> np.ndarray:
    """Cell labels, empty for cells not filled in yet (NaN) or padding (-inf).

    Two significant digits: a cell is about 25 px wide on a 1024 px screen; hovering shows more.
    """
    v = np.asarray(values, dtype=np.float64)
    return np.vectorize(lambda a: f"{a + 0.0:.2g}" if np.isfinite(a) else "", otypes=[object])(v)  # no "-0"


def _limit(values: np.ndarray) -> float:
    finite = np.abs(np.asarray(values, dtype=np.float64))
    finite = finite[np.isfinite(finite)]
    return float(finite.max()) if finite.size and finite.max() > 0 else 1.0


def _grid_trace(values: np.ndarray, limit: float, name: str, x0: int = 0, y0: int = 0) -> go.Heatmap:
    v = np.asarray(values, dtype=np.float64)
    return go.Heatmap(
        z=np.where(np.isfinite(v), v, np.nan),
        x0=x0,
        y0=y0,
        text=_text(v),
        texttemplate="%{text}",
        textfont=dict(size=10),
        colorscale=SIGNED_SCALE,
        zmin=-limit,
        zmax=limit,
        showscale=False,
        xgap=1,
        ygap=1,
        name=name,
        hovertemplate="row %{y}, column %{x}<br>%{z:.4g}<extra>" + name + "</extra>",
    )


def _blank(shape: tuple[int, int]) -> go.Heatmap:
    """Light grey cells under an output that fills in, so its size shows from the first step."""
    return go.Heatmap(
        z=np.zeros(shape),
        colorscale=[[0, "#ECECEC"], [1, "#ECECEC"]],
        showscale=False,
        xgap=1,
        ygap=1,
        hoverinfo="skip",
    )


def _outline(rows: Sequence[int], cols: Sequence[int], colour: str = WINDOW_COLOUR, width: float = 3) -> go.Scatter:
    """The outlines of the cells rows x cols (one closed square each; with dilation they are apart)."""
    xs: list[float | None] = []
    ys: list[float | None] = []
    for r in rows:
        for c in cols:
            xs += [c - 0.5, c + 0.5, c + 0.5, c - 0.5, c - 0.5, None]
            ys += [r - 0.5, r - 0.5, r + 0.5, r + 0.5, r - 0.5, None]
    return go.Scatter(x=xs, y=ys, mode="lines", line=dict(color=colour, width=width), hoverinfo="skip")


def _marker(row: int, col: int) -> go.Scatter:
    return go.Scatter(
        x=[col],
        y=[row],
        mode="markers",
        marker=dict(symbol="star", size=18, color=WINNER_COLOUR, line=dict(color=WINDOW_COLOUR, width=1.5)),
        hoverinfo="skip",
    )


def _box(fig: go.Figure, top: int, left: int, bottom: int, right: int, row: int, col: int) -> None:
    """A dashed frame around the part of a grid that is real input (the rest is padding)."""
    fig.add_shape(
        type="rect",
        x0=left - 0.5,
        x1=right - 0.5,
        y0=top - 0.5,
        y1=bottom - 0.5,
        line=dict(color="#555555", width=2, dash="dash"),
        row=row,
        col=col,
    )


def _height(rows: int) -> int:
    """Figure height for grids of this many rows: about 32 px a cell, plus the title and the controls."""
    return 230 + 32 * max(rows, 6)


@dataclass(frozen=True)
class _Frame:
    traces: list[go.BaseTraceType]  # new versions of the changing traces, in the order of `changing`
    title: str


def _animate(fig: go.Figure, changing: list[int], frames: list[_Frame], height: int) -> go.Figure:
    """Frames, the Play/speed/Pause buttons and a step slider; the figure starts at the first step."""
    names = [str(n + 1) for n in range(len(frames))]
    fig.frames = [
        go.Frame(data=f.traces, traces=changing, name=name, layout=dict(title_text=f.title))
        for f, name in zip(frames, names, strict=True)
    ]
    for index, trace in zip(changing, frames[0].traces, strict=True):
        fig.data[index].update(trace)
    fig.update_layout(title_text=frames[0].title)

    def play(ms: int) -> dict:
        return dict(
            frame=dict(duration=ms, redraw=True), transition=dict(duration=0), fromcurrent=True, mode="immediate"
        )

    buttons = [dict(label=f"▶ {speed}/s", method="animate", args=[None, play(1000 // speed)]) for speed in SPEEDS]
    buttons.append(
        dict(
            label="❚❚ Pause",
            method="animate",
            args=[[None], dict(frame=dict(duration=0, redraw=False), mode="immediate")],
        )
    )
    fig.update_layout(
        height=height,
        margin=dict(l=0, r=0, t=90, b=10),
        title=dict(x=0.01, y=0.98, yanchor="top", font=dict(size=14)),
        showlegend=False,
        updatemenus=[
            dict(type="buttons", direction="right", buttons=buttons, x=0, y=-0.04, xanchor="left", yanchor="top")
        ],
        sliders=[
            dict(
                active=0,
                x=0.32,
                len=0.68,
                y=-0.02,
                yanchor="top",
                currentvalue=dict(prefix="Step ", suffix=f" of {len(frames)}", font=dict(size=13)),
                pad=dict(t=8),
                steps=[
                    dict(
                        label=name,
                        method="animate",
                        args=[[name], dict(frame=dict(duration=0, redraw=True), mode="immediate")],
                    )
                    for name in names
                ],
            )
        ],
    )
    fig.update_layout(margin_b=110)
    return fig


def _panels(shapes: Sequence[tuple[int, int]], titles: Sequence[str], stacked_middle: bool = False) -> go.Figure:
    """One subplot per grid, side by side, each cell square and each grid exactly its own size.

    stacked_middle: four grids with the second and third (kernel and products, both
    small) one above the other between the first and the last, so the two big grids
    get the width.
    """
    if stacked_middle:
        specs = [[{"rowspan": 2}, {}, {"rowspan": 2}], [None, {}, None]]
        widths = [shapes[0][1], max(shapes[1][1], shapes[2][1]), shapes[3][1]]
        fig = make_subplots(
            2,
            3,
            specs=specs,
            column_widths=widths,
            subplot_titles=[titles[0], titles[1], titles[3], titles[2]],  # in the order of the specs' cells
            horizontal_spacing=0.04,
            vertical_spacing=0.12,
        )
        places = [(1, 1), (1, 2), (2, 2), (1, 3)]
    else:
        fig = make_subplots(
            1, len(shapes), column_widths=[w for _, w in shapes], subplot_titles=list(titles), horizontal_spacing=0.06
        )
        places = [(1, n + 1) for n in range(len(shapes))]
    for (row, col), (h, w) in zip(places, shapes, strict=True):
        x_name = fig.get_subplot(row, col).yaxis.anchor
        fig.update_xaxes(range=[-0.5, w - 0.5], constrain="domain", showgrid=False, zeroline=False, row=row, col=col)
        fig.update_yaxes(
            range=[h - 0.5, -0.5],
            scaleanchor=x_name,
            constrain="domain",
            showgrid=False,
            zeroline=False,
            row=row,
            col=col,
        )
    fig.update_annotations(font_size=13)
    fig.update_xaxes(tickfont_size=9)
    fig.update_yaxes(tickfont_size=9)
    return fig


def _sum_words(products: np.ndarray, total: float) -> str:
    terms = products.flatten() + 0.0
    if terms.size > 9:
        return f"sum of the {terms.size} products = {total + 0.0:.4g}"
    text = f"{terms[0]:.3g}" + "".join(f" − {-t:.3g}" if t < 0 else f" + {t:.3g}" for t in terms[1:])
    return f"{text} = {total + 0.0:.4g}"


def sweep_figure(
    sweep: Sweep,
    titles: tuple[str, str, str, str],
    inside: tuple[int, int, int, int] | None = None,
    keep: tuple[int, int, int, int] | None = None,
) -> go.Figure:
    """A kernel sliding over a grid: grid with the window, kernel, products, output filling in.

    titles: the four panels' names. inside: (top, left, bottom, right) of the real
    input in the grid (the rest is padding, framed by a dashed line). keep: the same
    for the output cells that are kept at the end (framed likewise), e.g. the
    input gradient's cells that are not padding.
    """
    out_h, out_w = sweep.out_shape
    k = sweep.kernel.shape
    fig = _panels([sweep.grid.shape, k, k, sweep.out_shape], titles, stacked_middle=True)
    fig.add_trace(_grid_trace(sweep.grid, _limit(sweep.grid), "input"), 1, 1)
    fig.add_trace(_outline([], []), 1, 1)
    fig.add_trace(_grid_trace(sweep.kernel, _limit(sweep.kernel), "kernel"), 1, 2)
    products_limit = _limit(np.array([s.products for s in sweep.steps]))
    fig.add_trace(_grid_trace(np.zeros(k), products_limit, "products"), 2, 2)
    out_limit = _limit(sweep.out)
    fig.add_trace(_blank(sweep.out_shape), 1, 3)
    fig.add_trace(_grid_trace(np.full(sweep.out_shape, np.nan), out_limit, "output"), 1, 3)
    fig.add_trace(_outline([], []), 1, 3)
    if inside is not None:
        _box(fig, *inside, row=1, col=1)
    if keep is not None:
        _box(fig, *keep, row=1, col=3)
    frames = []
    out = np.full(sweep.out_shape, np.nan)
    for n, step in enumerate(sweep.steps):
        out[step.cell] = step.total
        frames.append(
            _Frame(
                [
                    _outline(step.rows, step.cols),
                    _grid_trace(step.products, products_limit, "products"),
                    _grid_trace(out.copy(), out_limit, "output"),
                    _outline([step.cell[0]], [step.cell[1]]),
                ],
                f"Output cell ({step.cell[0]}, {step.cell[1]}), step {n + 1} of {out_h * out_w}:<br>"
                f"{_sum_words(step.products, step.total)}",
            )
        )
    return _animate(fig, [1, 3, 5, 6], frames, _height(max(sweep.grid.shape[0], out_h)))


def pool_figure(pooling: Pooling, titles: tuple[str, str]) -> go.Figure:
    """Max pooling: each window outlined on its input, its winner starred, the output filling in."""
    grid = pooling.grid
    fig = _panels([grid.shape, pooling.out.shape], titles)
    fig.add_trace(_grid_trace(grid, _limit(grid), "input"), 1, 1)
    fig.add_trace(_outline([], []), 1, 1)
    fig.add_trace(_marker(0, 0), 1, 1)
    limit = _limit(pooling.out)
    fig.add_trace(_blank(pooling.out.shape), 1, 2)
    fig.add_trace(_grid_trace(np.full(pooling.out.shape, np.nan), limit, "output"), 1, 2)
    fig.add_trace(_outline([], []), 1, 2)
    p = pooling.padding
    if p:
        _box(fig, p, p, grid.shape[0] - p, grid.shape[1] - p, row=1, col=1)
    out = np.full(pooling.out.shape, np.nan)
    frames = []
    for n, step in enumerate(pooling.steps):
        out[step.cell] = step.value
        frames.append(
            _Frame(
                [
                    _outline(step.rows, step.cols),
                    _marker(*step.winner),
                    _grid_trace(out.copy(), limit, "output"),
                    _outline([step.cell[0]], [step.cell[1]]),
                ],
                f"Output cell ({step.cell[0]}, {step.cell[1]}), step {n + 1} of {len(pooling.steps)}:<br>"
                f"the largest of the {step.rows.size * step.cols.size} values is {step.value:.4g} "
                f"(row {step.winner[0]}, column {step.winner[1]})",
            )
        )
    return _animate(fig, [1, 2, 4, 5], frames, _height(grid.shape[0]))


def relu_figure(x: np.ndarray, titles: tuple[str, str]) -> go.Figure:
    """ReLU one value at a time: negatives become 0, positives pass, the output filling in."""
    x = np.asarray(x, dtype=np.float64)
    fig = _panels([x.shape, x.shape], titles)
    limit = _limit(x)
    fig.add_trace(_grid_trace(x, limit, "before"), 1, 1)
    fig.add_trace(_outline([], []), 1, 1)
    fig.add_trace(_blank(x.shape), 1, 2)
    fig.add_trace(_grid_trace(np.full(x.shape, np.nan), limit, "after"), 1, 2)
    fig.add_trace(_outline([], []), 1, 2)
    out = np.full(x.shape, np.nan)
    frames = []
    for n, (r, c) in enumerate(np.ndindex(*x.shape)):
        v = x[r, c]
        out[r, c] = max(v, 0.0)
        verdict = "negative, so it becomes 0" if v < 0 else "kept as it is"
        frames.append(
            _Frame(
                [_outline([r], [c]), _grid_trace(out.copy(), limit, "after"), _outline([r], [c])],
                f"Cell ({r}, {c}), step {n + 1} of {x.size}:<br>max(0, {v:.3g}) = {max(v, 0.0):.3g}: {verdict}",
            )
        )
    return _animate(fig, [1, 3, 4], frames, _height(x.shape[0]))
