"""Plotly figures shared by the pages: bar charts, feature-map mosaics, overlays.

Grids of many small maps are drawn as ONE heatmap (a mosaic with gaps), not as
hundreds of subplots: a 512-channel layer stays a light, responsive figure.
"""

from __future__ import annotations

import base64
import functools
import io
import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.colors import get_colorscale, hex_to_rgb, label_rgb, qualitative, sample_colorscale

GAP = np.nan  # mosaic gaps render transparent
CLASS_PALETTE = qualitative.Dark24  # one colour per class in maps of predicted classes
# Groups in scatter maps: ten colours that all stand out on white (Streamlit's default
# theme drew one class light grey, nearly invisible on a projector).
GROUP_PALETTE = qualitative.D3

# One colour convention for signed values (weights, maps before ReLU, probability drops),
# stated here once: every signed figure uses SIGNED_SCALE centred on 0, and every caption
# that explains it quotes SIGNED_WORDS. Plotly's "RdBu" runs red -> blue from low to high,
# so the convention "red = positive" needs its reverse.
SIGNED_SCALE = "RdBu_r"
SIGNED_WORDS = "red = positive, blue = negative, white = 0"


def plotly_scale(colorscale: str | Sequence) -> list[list]:
    """A colour scale (a name or [position, colour] pairs) as [position, "rgb(r, g, b)"] pairs.

    Streamlit's browser code treats the colours #000001 to #000040 in any Plotly figure as
    placeholders for its theme's colours and replaces them, even with theme=None: Inferno's and
    Magma's black at 0 ("#000004") became a lavender, so the colour bar and the low values no
    longer matched `colorize`'s PNGs and overlays. Written as rgb() no colour is replaced.
    """
    scale = get_colorscale(colorscale) if isinstance(colorscale, str) else colorscale
    return [[float(p), label_rgb(hex_to_rgb(c)) if c.startswith("#") else c] for p, c in scale]


def top_k_bar(pairs: list[tuple[str, float]], title: str = "Top predictions") -> go.Figure:
    """The k most probable classes as horizontal bars on a fixed 0-100 % axis, each bar labelled.

    The axis is always the whole 0-100 %, never zoomed to the bars: a probability is a share
    of one, and the length of a bar against the full axis is the lesson. An untrained VGG-16
    spreads its belief over 1,000 classes (0.1 % each), and bars stretched across the chart
    would show that as confidence; on the full axis they are slivers, and the printed
    numbers (always outside small bars, in a readable size) give the exact values. Ticks
    every 25 % with room for the "100%" label, which a tight margin cut off (the axis then
    seemed to end at 80 %).
    """
    labels = [label for label, _ in pairs][::-1]
    probs = [p for _, p in pairs][::-1]
    fig = go.Figure(
        go.Bar(
            x=probs,
            y=labels,
            orientation="h",
            text=[f"{p:.1%}" for p in probs],
            textposition="auto",  # inside a long bar, outside a short one
            textfont=dict(size=14),
            cliponaxis=False,
            marker_color="#4C78A8",
            hovertemplate="%{y}: %{x:.2%}<extra></extra>",
        )
    )
    fig.update_layout(
        title=title,
        xaxis=dict(
            title="softmax probability",
            range=[0, 1],
            fixedrange=True,
            tickvals=[0, 0.25, 0.5, 0.75, 1],
            tickformat=".0%",
        ),
        yaxis=dict(fixedrange=True, tickfont=dict(size=13)),
        height=80 + 40 * len(pairs),
        margin=dict(l=10, r=30, t=40, b=50),
        uniformtext=dict(minsize=12, mode="show"),
    )
    return fig


def _downsample(maps: np.ndarray, max_side: int) -> np.ndarray:
    """Average-pool [C, H, W] maps so the longer side is at most max_side."""
    f = math.ceil(max(maps.shape[1:]) / max_side)
    if f <= 1:
        return maps
    c, h, w = maps.shape
    hp, wp = math.ceil(h / f) * f, math.ceil(w / f) * f
    padded = np.pad(maps, ((0, 0), (0, hp - h), (0, wp - w)), mode="edge")
    return padded.reshape(c, hp // f, f, wp // f, f).mean(axis=(2, 4))


# Tiles up to this many get their number printed in a corner; more (a 512-channel kernel grid,
# ~20 px tiles) would be covered by the labels, so rows and columns are numbered on the axes instead.
NUMBERED_TILES = 100


def number_tiles(fig: go.Figure, numbers: Sequence[int], cols: int, h: int, w: int, gap: int) -> go.Figure:
    """Print each tile's number visibly (a projector shows no hover): in the tile's top-left corner, or,
    for many small tiles, as row starts on the y axis and column offsets (+0, +1, ...) on the x axis.

    Tile i sits at row i // cols, column i % cols of a mosaic with `gap` between h x w tiles; the
    numbers are what a caption calls the tiles (channel numbers in the chosen order)."""
    numbers = [int(n) for n in numbers]
    if len(numbers) <= NUMBERED_TILES:
        corner = dict(
            showarrow=False,
            xanchor="left",
            yanchor="top",
            font=dict(size=11, color="black"),
            bgcolor="rgba(255,255,255,0.8)",
            borderpad=1,
        )
        return add_annotations(
            fig,
            [
                dict(x=(i % cols) * (w + gap) - 0.5, y=(i // cols) * (h + gap) - 0.5, text=str(number), **corner)
                for i, number in enumerate(numbers)
            ],
        )
    rows = math.ceil(len(numbers) / cols)
    fig.update_layout(margin=dict(l=36, t=30))
    fig.update_yaxes(
        visible=True,
        showticklabels=True,
        tickvals=[r * (h + gap) + (h - 1) / 2 for r in range(rows)],
        ticktext=[str(numbers[r * cols]) for r in range(rows)],
    )
    fig.update_xaxes(
        visible=True,
        showticklabels=True,
        side="top",
        tickvals=[c * (w + gap) + (w - 1) / 2 for c in range(cols)],
        ticktext=[f"+{c}" for c in range(cols)],
    )
    return fig


def add_annotations(fig: go.Figure, annotations: list[dict]) -> go.Figure:
    """Add many annotations at once. Plotly's add_annotation copies every annotation already there on
    each call, so numbering 64 tiles one call at a time took about half a second of every page run."""
    if annotations:
        fig.layout.annotations = [*fig.layout.annotations, *annotations]
    return fig


def png_source(image: np.ndarray) -> str:
    """An RGB (or grey) uint8 picture as a PNG data URI, for a Plotly image trace's `source`."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def image_trace(image: np.ndarray, **kwargs) -> go.Image:
    """A uint8 RGB picture as a Plotly image trace that carries a PNG, not the pixel array.

    As `z` a picture travels as JSON numbers (a layer overview of 64 tiles: 3.4 MB, built and
    hashed on every page run); as a PNG it is tens of kB. Plotly draws a `source` picture pixel
    for pixel, unsmoothed, at the same coordinates, and still hovers x and y.
    """
    return go.Image(source=png_source(np.ascontiguousarray(image, dtype=np.uint8)), **kwargs)


def mosaic(maps: np.ndarray, cols: int, gap: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Tile [N, h, w] maps row-major; returns (values, tile index per cell, -1 in gaps)."""
    n, h, w = maps.shape
    rows = math.ceil(n / cols)
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap), GAP, dtype=np.float32)
    index = np.full(out.shape, -1, dtype=np.int32)
    for i in range(n):
        r, c = divmod(i, cols)
        y, x = r * (h + gap), c * (w + gap)
        out[y : y + h, x : x + w] = maps[i]
        index[y : y + h, x : x + w] = i
    return out, index


def feature_grid(
    maps: np.ndarray,
    order: np.ndarray | None = None,
    shared_scale: bool = True,
    colorscale: str = "Viridis",
    max_cells: int = 250_000,
    cols: int | None = None,
    titles: Sequence[str] | None = None,
    height: int = 640,
) -> go.Figure:
    """All channels of one layer as a mosaic, each tile numbered with its channel (see number_tiles).

    shared_scale=False stretches each map to its own min..max, which shows the
    pattern inside weak maps but hides how weak they are. cols fixes the number of
    tiles per row (default: about square); titles name each tile above it.
    """
    maps = np.asarray(maps, dtype=np.float32)
    order = np.arange(len(maps)) if order is None else np.asarray(order)
    n = len(order)
    max_side = max(4, int(math.sqrt(max_cells / n)))
    tiles = _downsample(maps[order], max_side)
    if not shared_scale:
        lo = tiles.min(axis=(1, 2), keepdims=True)
        span = tiles.max(axis=(1, 2), keepdims=True) - lo
        tiles = np.where(span > 0, (tiles - lo) / np.where(span > 0, span, 1), 0.0)
    cols = cols or math.ceil(math.sqrt(n * tiles.shape[1] / tiles.shape[2]))
    values, index = mosaic(tiles, cols)
    channel = np.where(index >= 0, order[np.clip(index, 0, None)], -1)
    fig = go.Figure(
        go.Heatmap(
            z=values,
            customdata=channel,
            colorscale=plotly_scale(colorscale),
            hovertemplate="channel %{customdata}<br>value %{z:.3g}<extra></extra>",
            colorbar=dict(title="activation" if shared_scale else "per-map<br>0..1", thickness=12),
        )
    )
    h, w = tiles.shape[1:]
    add_annotations(
        fig,
        [
            dict(
                x=(i % cols) * (w + 1) + (w - 1) / 2,
                y=(i // cols) * (h + 1) - 0.5,
                text=title,
                showarrow=False,
                yanchor="bottom",
            )
            for i, title in enumerate(titles or [])
        ],
    )
    # no grid lines or zero lines: they showed through the empty cells of a last, unfilled row
    axes = dict(showticklabels=False, showgrid=False, zeroline=False, ticks="", constrain="domain")
    fig.update_yaxes(autorange="reversed", scaleanchor="x", **axes)
    fig.update_xaxes(**axes)
    fig.update_layout(margin=dict(l=0, r=0, t=30 if titles else 10, b=0), height=height, plot_bgcolor="white")
    return fig if titles else number_tiles(fig, order, cols, h, w, 1)


def heatmap(
    values: np.ndarray,
    title: str = "",
    colorscale: str = "Viridis",
    zmid: float | None = None,
    signed: bool = False,
) -> go.Figure:
    """One 2-D map with pixel hover; signed=True draws it in the signed convention (SIGNED_WORDS)."""
    if signed:
        colorscale, zmid = SIGNED_SCALE, 0.0
    zmin = zmax = None
    finite = np.asarray(values, dtype=np.float64)[np.isfinite(values)]
    if finite.size and finite.min() == finite.max():
        # One value everywhere: Plotly would invent a range around it (an all-zero map got a -0.4…0.4 bar).
        # Draw it on a bar that starts at 0 and say so in the title.
        value = float(finite[0])
        zmin, zmax = (min(value, 0.0), max(value, 0.0)) if value else (0.0, 1.0)
        if signed or zmid is not None:
            reach = abs(value) or 1.0
            zmin, zmax, zmid = -reach, reach, None
        title = f"{title}: every value {value:.4g}" if title else f"every value {value:.4g}"
    fig = go.Figure(
        go.Heatmap(
            z=np.asarray(values, dtype=np.float32),  # half the bytes of float64; the hover shows 4 digits
            colorscale=plotly_scale(colorscale),
            zmid=zmid,
            zmin=zmin,
            zmax=zmax,
            hovertemplate="x %{x}, y %{y}<br>%{z:.4g}<extra></extra>",
            colorbar=dict(thickness=12),
        )
    )
    fig.update_yaxes(autorange="reversed", scaleanchor="x", constrain="domain")
    fig.update_xaxes(constrain="domain")
    # room for the pixel tick labels, which a zero margin clips
    fig.update_layout(title=title, margin=dict(l=40, r=0, t=40 if title else 10, b=30), height=420)
    return fig


def colorize(values: np.ndarray, colorscale: str = "Jet", signed: bool = False) -> np.ndarray:
    """Map [H, W] values to uint8 RGB with a Plotly colour scale (min..max stretched).

    signed=True draws them in the signed convention instead (SIGNED_SCALE, stretched
    symmetrically so 0 is white), whatever colorscale says.
    """
    v = np.asarray(values, dtype=np.float64)
    lo, hi = np.nanmin(v), np.nanmax(v)
    if signed:
        colorscale = SIGNED_SCALE
        hi = max(abs(lo), abs(hi))
        lo = -hi
    t = (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)
    return _lut(colorscale)[np.clip((t * 255).round().astype(int), 0, 255)]


@functools.lru_cache(maxsize=32)
def _lut(colorscale: str) -> np.ndarray:
    """256 RGB colours sampled along a named scale, once per scale: sampling it took 10-30 ms per
    picture, and the network overview colours 50 tiles per run."""
    lut = np.array(
        [[int(c) for c in s[4:-1].split(",")] for s in sample_colorscale(colorscale, np.linspace(0, 1, 256))],
        dtype=np.uint8,
    )
    lut.flags.writeable = False
    return lut


def resize_nearest(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a 2-D map, so a 14x14 map lines up with a 224 px image."""
    h, w = values.shape
    ys = (np.arange(shape[0]) * h / shape[0]).astype(int)
    xs = (np.arange(shape[1]) * w / shape[1]).astype(int)
    return values[ys][:, xs]


def overlay(
    image: np.ndarray, values: np.ndarray, opacity: float = 0.5, colorscale: str = "Jet", signed: bool = False
) -> np.ndarray:
    """Blend a coloured map (see colorize) over an RGB uint8 image of the same or a coarser grid."""
    rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
    coloured = colorize(resize_nearest(values, rgb.shape[:2]), colorscale, signed)
    return (rgb * (1 - opacity) + coloured * opacity).round().astype(np.uint8)


def hide_axes(fig: go.Figure) -> go.Figure:
    """No ticks, tick marks, axis lines or grid around a picture.

    Hiding only the tick labels left short tick marks and a line under every image once
    Streamlit's theme was applied; a picture has no axes worth reading (hover gives x, y).
    """
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def rgb_figure(image: np.ndarray, title: str = "", height: int = 420) -> go.Figure:
    """An RGB (or grey) uint8 image as a figure with pixel hover."""
    rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
    fig = hide_axes(go.Figure(image_trace(rgb, hovertemplate="x %{x}, y %{y}<extra></extra>")))
    fig.update_layout(title=title, margin=dict(l=0, r=0, t=40 if title else 10, b=0), height=height)
    return fig


def filter_grid(filters: np.ndarray, upscale: int = 8) -> go.Figure:
    """First-layer filters [N, k, k, C] in 0..1 as a grid of small pictures, each numbered."""
    n, k, _, c = filters.shape
    cols = math.ceil(math.sqrt(n))
    big = np.kron(filters, np.ones((1, upscale, upscale, 1)))
    canvas = np.ones((math.ceil(n / cols) * (k * upscale + 2), cols * (k * upscale + 2), 3))
    for i in range(n):
        r, col = divmod(i, cols)
        y, x = r * (k * upscale + 2), col * (k * upscale + 2)
        canvas[y : y + k * upscale, x : x + k * upscale] = big[i] if c == 3 else big[i, ..., :1]
    fig = hide_axes(go.Figure(image_trace((canvas * 255).astype(np.uint8), hoverinfo="skip")))
    fig.update_layout(margin=dict(l=0, r=0, t=10, b=0), height=520)
    return number_tiles(fig, range(n), cols, k * upscale, k * upscale, 2)


def kernel_grid(kernels: np.ndarray) -> go.Figure:
    """One filter's kernels [in, k, k] in the signed convention (SIGNED_WORDS), centred on zero; numbered by
    input channel, the numbers the Filters page's caption names."""
    cols = math.ceil(math.sqrt(len(kernels)))
    values, index = mosaic(kernels, cols)
    fig = go.Figure(
        go.Heatmap(
            z=values,
            customdata=index,
            colorscale=plotly_scale(SIGNED_SCALE),
            zmid=0,
            hovertemplate="input channel %{customdata}<br>weight %{z:.4f}<extra></extra>",
            colorbar=dict(title="weight", thickness=12),
        )
    )
    axes = dict(showticklabels=False, showgrid=False, zeroline=False, ticks="", constrain="domain")
    fig.update_yaxes(autorange="reversed", scaleanchor="x", **axes)
    fig.update_xaxes(**axes)
    fig.update_layout(margin=dict(l=0, r=0, t=10, b=0), height=520, plot_bgcolor="white")
    k = kernels.shape[-1]
    return number_tiles(fig, range(len(kernels)), cols, k, k, 1)


def number_map(
    values: np.ndarray, title: str, numbers: bool, colorscale: str = "Greys_r", signed: bool = False
) -> go.Figure:
    """A heatmap that, for small worked examples, prints every value in its cell (signed: SIGNED_WORDS)."""
    fig = heatmap(values, title, colorscale, signed=signed)
    if numbers:
        fig.update_traces(texttemplate="%{z:.4~g}", textfont=dict(size=11))
    fig.update_layout(height=360)
    return fig


def value_bars(values: np.ndarray, names: list[str], title: str) -> go.Figure:
    """One horizontal bar per named value, first name on top."""
    fig = go.Figure(go.Bar(x=values, y=names, orientation="h"))
    fig.update_layout(title=title, height=360, margin=dict(l=0, r=0, t=40, b=0), yaxis=dict(autorange="reversed"))
    return fig


def histogram(edges: np.ndarray, counts: np.ndarray, title: str) -> go.Figure:
    """Counts per bin drawn at the bins' true positions and widths."""
    fig = go.Figure(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=np.diff(edges)))
    fig.update_layout(title=title, height=280, margin=dict(l=0, r=0, t=40, b=0), bargap=0)
    return fig


def occlusion_grid(
    values: np.ndarray,
    boxes: np.ndarray,
    hover: np.ndarray,
    title: str,
    colorscale: str | list,
    value_name: str,
    zmid: float | None = None,
    height: int = 460,
) -> go.Figure:
    """One cell per occluder position, centred where the window's centre was.

    boxes: (n_y, n_x, 4) windows as (y0, x0, y1, x1), end exclusive; hover: (n_y, n_x) text
    shown under the window's rows and columns (e.g. the top-3 classes there).
    """
    box_text = np.vectorize(lambda a, b, c, d: f"rows {a}–{c - 1}, cols {b}–{d - 1}")(*np.moveaxis(boxes, -1, 0))
    cy = (boxes[:, 0, 0] + boxes[:, 0, 2] - 1) / 2
    cx = (boxes[0, :, 1] + boxes[0, :, 3] - 1) / 2
    fig = go.Figure(
        go.Heatmap(
            z=values,
            x=cx,
            y=cy,
            customdata=np.stack([box_text, hover], axis=-1),
            colorscale=plotly_scale(colorscale),
            zmid=zmid,
            hovertemplate=f"{value_name} %{{z:.4g}}<br>window %{{customdata[0]}}<br>%{{customdata[1]}}<extra></extra>",
            colorbar=dict(thickness=14, len=0.9),
        )
    )
    # automargin: Plotly makes room for the axis titles, which a fixed margin clipped at 1440 px
    fig.update_yaxes(
        autorange="reversed", scaleanchor="x", constrain="domain", title="window centre y (px)", automargin=True
    )
    fig.update_xaxes(constrain="domain", title="window centre x (px)", automargin=True)
    # Meant for 3/5 of the page's column, beside the picture: the height sets the map's side.
    fig.update_layout(title=title, margin=dict(l=10, r=10, t=60, b=10), height=height)
    return fig


def class_grid(
    classes: np.ndarray, boxes: np.ndarray, hover: np.ndarray, labels: tuple[str, ...], title: str
) -> tuple[go.Figure, np.ndarray]:
    """A map of class indices with one colour per class present and a legend with each class's share.

    Returns the figure and the same map as an RGB picture (for downloading) in the same colours.
    """
    present, codes = np.unique(classes, return_inverse=True)
    codes = codes.reshape(classes.shape)
    colours = [CLASS_PALETTE[i % len(CLASS_PALETTE)] for i in range(len(present))]
    steps = np.linspace(0, 1, len(present) + 1)
    scale = [pair for i, c in enumerate(colours) for pair in ((steps[i], c), (steps[i + 1], c))]
    fig = occlusion_grid(codes, boxes, hover, title, scale, "class")
    fig.data[0].update(zmin=-0.5, zmax=len(present) - 0.5, showscale=False)
    fig.data[0].hovertemplate = "window %{customdata[0]}<br>%{customdata[1]}<extra></extra>"
    for c, colour in zip(present, colours, strict=True):
        fig.add_trace(
            go.Scatter(
                x=[None],
                y=[None],
                mode="markers",
                marker=dict(size=12, color=colour, symbol="square"),
                name=f"{labels[c]} ({(classes == c).mean():.0%})",
                showlegend=True,
            )
        )
    fig.update_layout(legend=dict(title="prediction"))
    lut = np.array([[int(c[k : k + 2], 16) for k in (1, 3, 5)] for c in colours], np.uint8)
    return fig, lut[codes]


def scatter_map(coords: np.ndarray, groups: list[str], hover: list[str], you: np.ndarray, title: str) -> go.Figure:
    """A 2-D map of a data set: one WebGL trace per label (the legend toggles classes), the user's image a star.

    customdata carries each point's index in the data set, so a click finds its image.
    """
    fig = go.Figure()
    names, texts = np.asarray(groups), np.asarray(hover)
    for i, name in enumerate(sorted(set(groups))):
        idx = np.flatnonzero(names == name)
        fig.add_trace(
            go.Scattergl(
                x=coords[idx, 0],
                y=coords[idx, 1],
                mode="markers",
                name=name,
                marker={
                    "size": 4 if len(coords) > 2000 else 8,
                    "opacity": 0.75,
                    "color": GROUP_PALETTE[i % len(GROUP_PALETTE)],
                },
                customdata=idx,
                text=texts[idx],
                hovertemplate=f"{name}<br>%{{text}}<extra></extra>",
            )
        )
    fig.add_trace(
        go.Scattergl(
            x=[you[0]],
            y=[you[1]],
            mode="markers",
            name="your image",
            marker={"symbol": "star", "size": 22, "color": "black", "line": {"color": "yellow", "width": 2}},
            hovertemplate="your image<extra></extra>",
        )
    )
    fig.update_layout(
        title=title,
        height=620,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        legend={"itemsizing": "constant"},
        xaxis={"showticklabels": False},
        yaxis={"showticklabels": False, "scaleanchor": "x"},
        dragmode="pan",
    )
    return fig


def training_curves(histories: list[list], metric: str, title: str) -> go.Figure:
    """Train (solid) and test (dashed) curves of one metric for each run, a colour per run.

    histories: per run, its epoch records with `epoch`, `train_<metric>` and `test_<metric>`.
    """
    fig = go.Figure()
    for i, history in enumerate(histories):
        colour = qualitative.Plotly[i % len(qualitative.Plotly)]
        epochs = [p.epoch for p in history]
        for split, dash in (("train", "solid"), ("test", "dash")):
            values = [getattr(p, f"{split}_{metric}") for p in history]
            fig.add_scatter(
                x=epochs, y=values, name=f"run {i + 1} {split}", line=dict(color=colour, dash=dash), mode="lines"
            )
    fig.update_layout(title=title, xaxis_title="epoch", height=360, margin=dict(l=0, r=0, t=40, b=0))
    return fig


def picture(image: np.ndarray, min_side: int = 224) -> np.ndarray:
    """A (H, W, C) [0, 1] picture as RGB uint8, enlarged by whole pixels until its shorter side is >= min_side.

    Nearest-neighbour enlarging keeps a 28-pixel picture's pixels crisp; a browser
    stretching it would blur them.
    """
    pixels = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    if pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    factor = max(1, math.ceil(min_side / min(pixels.shape[:2])))
    return np.repeat(np.repeat(pixels, factor, axis=0), factor, axis=1)


def curves(history: dict[str, list[float]], title: str, log: bool = False, height: int = 260) -> go.Figure:
    """One line per named series against the step number (e.g. a dream's objective)."""
    fig = go.Figure()
    for name, values in history.items():
        fig.add_scatter(x=list(range(1, len(values) + 1)), y=values, name=name, mode="lines")
    fig.update_layout(
        title=title,
        xaxis_title="step",
        yaxis_type="log" if log else "linear",
        height=height,
        margin=dict(l=10, r=10, t=40, b=40),
        legend=dict(orientation="h", y=-0.3),
    )
    return fig


def scaled_picture(rgb: np.ndarray, side: int) -> np.ndarray:
    """An RGB image (uint8 or 0..1 floats, [h, w, 3]) scaled so its longer side is `side` pixels, uint8.

    Enlarging uses nearest neighbour, so a 3x3 receptive field stays nine crisp squares
    instead of a blur; shrinking uses area averaging (PIL's box filter)."""
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0, 1) * 255).round().astype(np.uint8)
    h, w = arr.shape[:2]
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    method = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.BOX
    return np.asarray(Image.fromarray(arr).resize(size, method))


def side_by_side(pictures: list[np.ndarray], gap: int = 4) -> np.ndarray:
    """Equal-height uint8 RGB pictures in a row with white gaps between them."""
    h = max(p.shape[0] for p in pictures)
    parts = []
    for i, p in enumerate(pictures):
        if i:
            parts.append(np.full((h, gap, 3), 255, np.uint8))
        parts.append(np.pad(p, ((0, h - p.shape[0]), (0, 0), (0, 0)), constant_values=255))
    return np.concatenate(parts, axis=1)


def boxed_image(image: np.ndarray, box: tuple[int, int, int, int], title: str = "", height: int = 360) -> go.Figure:
    """An image with a rectangle around box = (top, left, bottom, right) (bottom/right exclusive).

    The part of the box outside the image (a unit at the border looks into the zero
    padding) is cut off at the image's edge, where the figure ends."""
    h, w = image.shape[:2]
    top, left, bottom, right = box
    fig = rgb_figure(image, title, height)
    fig.add_shape(
        type="rect",
        x0=max(left, 0) - 0.5,
        x1=min(right, w) - 0.5,
        y0=max(top, 0) - 0.5,
        y1=min(bottom, h) - 0.5,
        line=dict(color="#FFD400", width=3),
    )
    fig.update_xaxes(range=[-0.5, w - 0.5])
    fig.update_yaxes(range=[h - 0.5, -0.5])
    return fig


def tile_mosaic(tiles: list[np.ndarray | None], names: list[str], cols: int = 8, side: int = 64) -> go.Figure:
    """Small RGB pictures in a grid, each titled (e.g. a layer's best patch per channel); None = empty tile."""
    rows = math.ceil(len(tiles) / cols)
    label, gap = 14, 4
    canvas = np.full((rows * (side + label + gap), cols * (side + gap), 3), 255, np.uint8)
    titles = []
    for i, (tile, name) in enumerate(zip(tiles, names, strict=True)):
        r, c = divmod(i, cols)
        y, x = r * (side + label + gap) + label, c * (side + gap)
        if tile is not None:
            p = scaled_picture(tile, side)
            canvas[y : y + p.shape[0], x : x + p.shape[1]] = p
        titles.append(
            dict(x=x + side / 2, y=y - label / 2, text=name, showarrow=False, font=dict(size=10), yanchor="middle")
        )
    fig = go.Figure(image_trace(canvas, hoverinfo="skip"))
    add_annotations(fig, titles)
    hide_axes(fig)
    fig.update_layout(margin=dict(l=0, r=0, t=10, b=0), height=min(1400, 40 + rows * (side + label + gap) * 1.3))
    return fig
