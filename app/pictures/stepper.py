"""Animated, step-by-step figures: a window sliding over a grid, one Plotly frame per step.

Every step is a Plotly frame and the Play/Pause buttons, the speed buttons and the
step slider are Plotly's own, so the animation runs entirely in the browser: once the
figure has arrived, playing it costs the server nothing, however many students watch.
Plotly redraws a whole figure for a frame that changes a heatmap, several times
slower than updating lines and text (measured in headless Chromium on a loaded
2-core machine: ~125-140 ms a frame against ~55 ms). So every grid is static,
coloured cells drawn once as layout shapes (a frame without a redraw deletes
heatmaps), and a frame changes only lines and text, which Plotly updates without a
redraw: the window's outline, the products as coloured numbers, the line of
arithmetic, and grey covers over the output cells not computed yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from app.analyses.stepper import Pooling, Sweep
from app.pictures.figures import SIGNED_SCALE

WINDOW_COLOUR = "#111111"  # thick black outlines read on red, blue and white cells alike
WINNER_COLOUR = "#F5B800"
# Playing speeds in steps per second; the fastest is the 10 frames per second.
SPEEDS = (1, 3, 10)


def _label(a: float) -> str:
    """Two significant digits (a cell is about 25 px wide on a 1024 px screen; hovering shows more), no "-0"."""
    if np.isneginf(a):
        return "−∞"
    return f"{a + 0.0:.2g}" if np.isfinite(a) else ""


def _limit(values: np.ndarray) -> float:
    finite = np.abs(np.asarray(values, dtype=np.float64))
    finite = finite[np.isfinite(finite)]
    return float(finite.max()) if finite.size and finite.max() > 0 else 1.0


def _ref(fig: go.Figure, row: int, col: int) -> tuple[str, str]:
    sub = fig.get_subplot(row, col)
    return sub.xaxis.plotly_name.replace("axis", ""), sub.yaxis.plotly_name.replace("axis", "")


def _grid(fig: go.Figure, values: np.ndarray, limit: float | None, name: str, row: int, col: int) -> None:
    """A grid of numbers in coloured cells (SIGNED_SCALE around 0; limit None: all light grey).

    Drawn as layout shapes under one text trace rather than as a heatmap: an animation
    frame that is not a full redraw removes every heatmap from the figure, but leaves
    shapes alone. Adds exactly one trace (the numbers, with hover).
    """
    v = np.asarray(values, dtype=np.float64)
    xref, yref = _ref(fig, row, col)
    finite = np.isfinite(v)
    t = np.clip(np.where(finite, v, 0.0) / (limit or 1.0) * 0.5 + 0.5, 0, 1)
    colours = sample_colorscale(SIGNED_SCALE, t.flatten().tolist())
    shapes = []
    for (r, c), colour in zip(np.ndindex(*v.shape), colours, strict=True):
        fill = colour if limit is not None and finite[r, c] else "#ECECEC"
        shapes.append(
            dict(
                type="rect",
                xref=xref,
                yref=yref,
                x0=c - 0.48,
                x1=c + 0.48,
                y0=r - 0.48,
                y1=r + 0.48,
                fillcolor=fill,
                line_width=0,
                layer="below",
            )
        )
    fig.layout.shapes = (*fig.layout.shapes, *shapes)
    rows, cols = np.indices(v.shape)
    dark = np.abs(t.flatten() - 0.5) > 0.3
    fig.add_trace(
        go.Scatter(
            x=cols.flatten(),
            y=rows.flatten(),
            mode="text",
            text=[_label(a) for a in v.flatten()],
            textfont=dict(size=10, color=np.where(dark & (limit is not None), "white", "#222222").tolist()),
            customdata=v.flatten(),
            hovertemplate="row %{y}, column %{x}<br>%{customdata:.4g}<extra>" + name + "</extra>",
        ),
        row,
        col,
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
        marker=dict(
            symbol="star", size=18, color=WINNER_COLOUR, opacity=0.8, line=dict(color=WINDOW_COLOUR, width=1.5)
        ),
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


CAPTION_SHARE = 0.16  # top part of the figure that holds the changing line of arithmetic


def _height(rows: int) -> int:
    """Figure height for grids of this many rows: about 32 px a cell, plus the caption and the controls."""
    return 230 + 32 * max(rows, 6)


def _cover(cells: Sequence[tuple[int, int]]) -> go.Scatter:
    """Grey squares over the output cells not computed yet (a filled line trace, so no redraw is needed)."""
    xs: list[float | None] = []
    ys: list[float | None] = []
    for r, c in cells:
        xs += [c - 0.5, c + 0.5, c + 0.5, c - 0.5, c - 0.5, None]
        ys += [r - 0.5, r - 0.5, r + 0.5, r + 0.5, r - 0.5, None]
    return go.Scatter(
        x=xs or [None], y=ys or [None], mode="lines", fill="toself", fillcolor="#ECECEC", line_width=0, hoverinfo="skip"
    )


def _numbers(values: np.ndarray) -> go.Scatter:
    """A small grid's values as coloured text (red positive, blue negative), changeable without a redraw."""
    rows, cols = np.indices(values.shape)
    v = values.flatten() + 0.0
    return go.Scatter(
        x=cols.flatten(),
        y=rows.flatten(),
        mode="text",
        text=[f"{a:.2g}" for a in v],
        textfont=dict(size=11, color=["#B2182B" if a > 0 else "#2166AC" if a < 0 else "#777777" for a in v]),
        hoverinfo="skip",
    )


def _caption(text: str) -> go.Scatter:
    return go.Scatter(
        x=[0],
        y=[0.5],
        mode="text",
        text=[text],
        textposition="middle right",
        textfont=dict(size=14),
        xaxis="x99",
        yaxis="y99",
        hoverinfo="skip",
        cliponaxis=False,
    )


@dataclass(frozen=True)
class _Frame:
    traces: list[go.BaseTraceType]  # new versions of the changing traces, in the order of `changing`
    caption: str


def _animate(fig: go.Figure, changing: list[int], frames: list[_Frame], height: int) -> go.Figure:
    """Frames, the Play/speed/Pause buttons and a step slider; the figure starts at the first step.

    The changing line of arithmetic is a text trace on its own axes above the grids
    (the grids' axes are moved down to make room), not the title: a frame's layout
    change is not applied without a redraw.
    """
    for key in fig.layout:
        if key.startswith("yaxis"):
            d0, d1 = fig.layout[key].domain
            fig.layout[key].domain = [d0 * (1 - CAPTION_SHARE), d1 * (1 - CAPTION_SHARE)]
    for note in fig.layout.annotations:  # the subplot titles
        note.y = note.y * (1 - CAPTION_SHARE)
    fig.update_layout(
        xaxis99=dict(domain=[0, 1], range=[0, 1], anchor="y99", visible=False, fixedrange=True),
        yaxis99=dict(domain=[1 - CAPTION_SHARE * 0.8, 1], range=[0, 1], anchor="x99", visible=False, fixedrange=True),
    )
    fig.add_trace(_caption(frames[0].caption))
    names = [str(n + 1) for n in range(len(frames))]
    fig.frames = [
        go.Frame(data=[*f.traces, _caption(f.caption)], traces=[*changing, len(fig.data) - 1], name=name)
        for f, name in zip(frames, names, strict=True)
    ]
    for index, trace in zip(changing, frames[0].traces, strict=False):
        fig.data[index].update(trace)

    def go_to(ms: int, **extra: object) -> dict:
        return dict(frame=dict(duration=ms, redraw=False), transition=dict(duration=0), mode="immediate", **extra)

    buttons = [
        dict(label=f"▶ {speed}/s", method="animate", args=[None, go_to(1000 // speed, fromcurrent=True)])
        for speed in SPEEDS
    ]
    buttons.append(dict(label="❚❚ Pause", method="animate", args=[[None], go_to(0)]))
    fig.update_layout(
        height=height,
        margin=dict(l=0, r=0, t=10, b=110),
        plot_bgcolor="white",
        showlegend=False,
        updatemenus=[
            dict(type="buttons", direction="right", buttons=buttons, x=0, y=-0.07, xanchor="left", yanchor="top")
        ],
        sliders=[
            dict(
                active=0,
                x=0.45,  # right of the four buttons even on a 1024 px screen, which hid "Step n of N"
                len=0.55,
                y=-0.05,
                yanchor="top",
                currentvalue=dict(prefix="Step ", suffix=f" of {len(frames)}", font=dict(size=13)),
                pad=dict(t=8),
                steps=[dict(label=name, method="animate", args=[[name], go_to(0)]) for name in names],
            )
        ],
    )
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
    fig.update_xaxes(tickfont_size=9, dtick=1 if max(w for _, w in shapes) <= 8 else 2)  # whole cell numbers only
    fig.update_yaxes(tickfont_size=9, dtick=1 if max(h for h, _ in shapes) <= 8 else 2)
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
    k = sweep.kernel.shape
    cells = [s.cell for s in sweep.steps]
    fig = _panels([sweep.grid.shape, k, k, sweep.out_shape], titles, stacked_middle=True)
    _grid(fig, sweep.grid, _limit(sweep.grid), "input", 1, 1)  # 0
    fig.add_trace(_outline([], []), 1, 1)  # 1: the window
    _grid(fig, sweep.kernel, _limit(sweep.kernel), "kernel", 1, 2)  # 2
    _grid(fig, np.full(k, np.nan), None, "", 2, 2)  # 3
    fig.add_trace(_numbers(np.zeros(k)), 2, 2)  # 4: the products
    _grid(fig, sweep.out, _limit(sweep.out), "output", 1, 3)  # 5
    fig.add_trace(_cover(cells), 1, 3)  # 6: cells still to compute
    fig.add_trace(_outline([], []), 1, 3)  # 7: the cell being computed
    if inside is not None:
        _box(fig, *inside, row=1, col=1)
    if keep is not None:
        _box(fig, *keep, row=1, col=3)
    # The kernel's numbers ride along unchanged: a frame drops the text of a subplot it leaves untouched.
    kernel_numbers = go.Scatter(fig.data[2])
    frames = [
        _Frame(
            [
                _outline(step.rows, step.cols),
                kernel_numbers,
                _numbers(step.products),
                _cover(cells[n + 1 :]),
                _outline([step.cell[0]], [step.cell[1]]),
            ],
            f"<b>Output cell ({step.cell[0]}, {step.cell[1]})</b>, step {n + 1} of {len(cells)}:<br>"
            f"{_sum_words(step.products, step.total)}",
        )
        for n, step in enumerate(sweep.steps)
    ]
    return _animate(fig, [1, 2, 4, 6, 7], frames, _height(max(sweep.grid.shape[0], sweep.out_shape[0])))


def pool_figure(pooling: Pooling, titles: tuple[str, str]) -> go.Figure:
    """Max pooling: each window outlined on its input, its winner starred, the output filling in."""
    grid = pooling.grid
    cells = [s.cell for s in pooling.steps]
    fig = _panels([grid.shape, pooling.out.shape], titles)
    _grid(fig, grid, _limit(grid), "input", 1, 1)  # 0
    fig.add_trace(_outline([], []), 1, 1)  # 1: the window
    fig.add_trace(_marker(0, 0), 1, 1)  # 2: its winner
    _grid(fig, pooling.out, _limit(pooling.out), "output", 1, 2)  # 3
    fig.add_trace(_cover(cells), 1, 2)  # 4
    fig.add_trace(_outline([], []), 1, 2)  # 5
    p = pooling.padding
    if p:
        _box(fig, p, p, grid.shape[0] - p, grid.shape[1] - p, row=1, col=1)
    frames = [
        _Frame(
            [
                _outline(step.rows, step.cols),
                _marker(*step.winner),
                _cover(cells[n + 1 :]),
                _outline([step.cell[0]], [step.cell[1]]),
            ],
            f"<b>Output cell ({step.cell[0]}, {step.cell[1]})</b>, step {n + 1} of {len(cells)}:<br>"
            f"the largest of the {step.rows.size * step.cols.size} values is {step.value:.4g} "
            f"(row {step.winner[0]}, column {step.winner[1]})",
        )
        for n, step in enumerate(pooling.steps)
    ]
    return _animate(fig, [1, 2, 4, 5], frames, _height(grid.shape[0]))


def relu_figure(x: np.ndarray, titles: tuple[str, str]) -> go.Figure:
    """ReLU one value at a time: negatives become 0, positives pass, the output filling in."""
    x = np.asarray(x, dtype=np.float64)
    cells = list(np.ndindex(*x.shape))
    fig = _panels([x.shape, x.shape], titles)
    limit = _limit(x)
    _grid(fig, x, limit, "before", 1, 1)  # 0
    fig.add_trace(_outline([], []), 1, 1)  # 1
    _grid(fig, np.maximum(x, 0.0), limit, "after", 1, 2)  # 2
    fig.add_trace(_cover(cells), 1, 2)  # 3
    fig.add_trace(_outline([], []), 1, 2)  # 4
    frames = []
    for n, (r, c) in enumerate(cells):
        v = x[r, c] + 0.0
        verdict = "negative, so it becomes 0" if v < 0 else "kept as it is"
        frames.append(
            _Frame(
                [_outline([r], [c]), _cover(cells[n + 1 :]), _outline([r], [c])],
                f"<b>Cell ({r}, {c})</b>, step {n + 1} of {x.size}:<br>max(0, {v:.3g}) = {max(v, 0.0):.3g}: {verdict}",
            )
        )
    return _animate(fig, [1, 3, 4], frames, _height(x.shape[0]))
