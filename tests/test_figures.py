"""Figure conventions: the colours a figure draws and the words a caption uses come from one place."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.colors import get_colorscale, unlabel_rgb

from app.pictures import figures


def _end_colours(fig) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """RGB of the lowest and the highest value of a figure's first trace's colour scale."""
    scale = fig.data[0].colorscale
    scale = get_colorscale(scale) if isinstance(scale, str) else scale
    return unlabel_rgb(scale[0][1]), unlabel_rgb(scale[-1][1])


def _colour_of(word: str, rgb: tuple[float, ...]) -> bool:
    r, _, b = rgb
    return {"red": r > b + 60, "blue": b > r + 60}[word]


def test_signed_colour_words_describe_the_signed_colour_scale() -> None:
    """The Filters page's caption once said red = positive over a scale that drew positive weights blue."""
    words = dict(
        (sign, colour) for colour, sign in re.findall(r"(red|blue) = (positive|negative)", figures.SIGNED_WORDS)
    )
    assert set(words) == {"positive", "negative"}
    kernels = np.linspace(-1, 1, 2 * 3 * 3).reshape(2, 3, 3)
    for fig in (figures.kernel_grid(kernels), figures.heatmap(kernels[0], signed=True)):
        low, high = _end_colours(fig)
        assert _colour_of(words["positive"], high) and _colour_of(words["negative"], low)
        assert fig.data[0].zmid == 0


def test_signed_overlay_puts_zero_at_white() -> None:
    """The occlusion drop overlay: 0 (no change) must be white whatever the range, as in the map beside it."""
    values = np.array([[-0.1, 0.0, 0.4]])
    rgb = figures.colorize(values, signed=True)
    assert (rgb[0, 1] > 240).all()  # white-ish
    assert rgb[0, 2, 0] > rgb[0, 2, 2] and rgb[0, 0, 2] > rgb[0, 0, 0]  # positive red, negative blue


def test_group_colours_stand_out_on_white() -> None:
    """Every group colour of the scatter map keeps a contrast of at least 2:1 against white (WCAG luminance)."""

    def luminance(hex_colour: str) -> float:
        rgb = np.array([int(hex_colour[k : k + 2], 16) for k in (1, 3, 5)]) / 255
        lin = np.where(rgb <= 0.03928, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
        return float(lin @ [0.2126, 0.7152, 0.0722])

    coords = np.random.default_rng(0).normal(size=(40, 2))
    groups = [f"class {i % 10}" for i in range(40)]
    fig = figures.scatter_map(coords, groups, groups, np.zeros(2), "map")
    colours = [t.marker.color for t in fig.data[:-1]]
    assert len(set(colours)) == 10
    assert all(1.05 / (luminance(c) + 0.05) >= 2 for c in colours)


def test_pictures_have_no_axes() -> None:
    """Ticks, tick marks and axis lines under a picture are noise: every picture figure hides its axes."""
    image = np.zeros((8, 6, 3), np.uint8)
    pictures = [
        figures.rgb_figure(image, "x"),
        figures.rgb_figure(image[..., 0]),
        figures.boxed_image(image, (1, 1, 4, 4)),
        figures.filter_grid(np.zeros((4, 3, 3, 3))),
        figures.tile_mosaic([image, None], ["a", "b"], cols=2),
    ]
    for fig in pictures:
        assert fig.layout.xaxis.visible is False and fig.layout.yaxis.visible is False
    boxed = pictures[2]
    assert tuple(boxed.layout.xaxis.range) == (-0.5, 5.5)  # a hidden axis still frames the picture


def test_top_k_bar_keeps_the_whole_probability_axis() -> None:
    """Tiny (untrained: 0.1 %) and large probabilities share one honest axis, 0-100 % with its 100 % tick,
    and every bar carries its value."""
    for pairs in ([("a", 0.0012), ("b", 0.0011), ("c", 0.001)], [("a", 0.97), ("b", 0.02), ("c", 0.01)]):
        fig = figures.top_k_bar(pairs)
        assert tuple(fig.layout.xaxis.range) == (0, 1)
        assert fig.layout.xaxis.tickvals[-1] == 1 and fig.layout.xaxis.tickformat == ".0%"
        assert list(fig.data[0].text) == [f"{p:.1%}" for _, p in pairs][::-1]
        assert fig.layout.margin.r >= 30  # room for the "100%" label at the right end


# Colours Streamlit's browser code swaps for its theme's in any Plotly figure (streamlit_plotly_theme.py).
STREAMLIT_PLACEHOLDERS = re.compile(r"#0000(?:0[1-9]|[1-3][0-9]|40)\b", re.IGNORECASE)


def _traces(fig) -> str:
    """The figure's traces as JSON (not the layout template: once Streamlit is imported, Plotly's default
    template is Streamlit's own, placeholders and all, and explicit trace colours override it)."""
    return json.dumps(fig.to_dict()["data"], default=str)


def test_colour_bars_use_the_scale_of_the_pictures() -> None:
    """Issue 21 item 5: with Inferno the bar showed lavender at 0 while the overlay was black there.
    Every figure's colours must survive Streamlit (no placeholder colour), and the map's ends must be
    the colours `colorize` paints into PNGs and overlays."""
    values = np.linspace(0, 1, 16).reshape(4, 4)
    for scale in ("Inferno", "Magma", "Jet", "Viridis", "Hot", "Greys_r"):
        fig = figures.heatmap(values, "t", scale)
        assert not STREAMLIT_PLACEHOLDERS.search(_traces(fig)), scale
        low, high = _end_colours(fig)
        painted = figures.colorize(values, scale)
        assert np.allclose(low, painted[0, 0], atol=1) and np.allclose(high, painted[-1, -1], atol=1), scale
    boxes = np.zeros((2, 2, 4), dtype=int)
    hover = np.full((2, 2), "")
    for fig in (
        figures.feature_grid(np.random.default_rng(0).random((3, 4, 4)), colorscale="Inferno"),
        figures.occlusion_grid(values[:2, :2], boxes, hover, "t", "Inferno", "v"),
        figures.kernel_grid(np.zeros((3, 3, 3))),
    ):
        assert not STREAMLIT_PLACEHOLDERS.search(_traces(fig))


def _annotations(fig) -> list[str]:
    return [a.text for a in fig.layout.annotations]


def test_every_tile_shows_its_number() -> None:
    """Issue 21 item 8: a projector shows no hover, so tiles carry their channel number visibly."""
    maps = np.random.default_rng(0).random((6, 5, 5))
    order = np.array([4, 0, 5, 1, 3, 2])
    assert _annotations(figures.feature_grid(maps, order)) == [str(c) for c in order]
    assert _annotations(figures.filter_grid(np.zeros((5, 3, 3, 3)))) == ["0", "1", "2", "3", "4"]
    assert _annotations(figures.kernel_grid(np.zeros((3, 3, 3)))) == ["0", "1", "2"]
    many = figures.kernel_grid(np.zeros((150, 3, 3)))  # 13 x 12 tiles of ~20 px: numbers on the axes
    assert not _annotations(many)
    assert list(many.layout.yaxis.ticktext) == [str(13 * r) for r in range(12)]
    assert list(many.layout.xaxis.ticktext)[:3] == ["+0", "+1", "+2"] and many.layout.yaxis.showticklabels


def _png_pixels(trace) -> np.ndarray:
    head, _, data = trace.source.partition(",")
    assert head == "data:image/png;base64"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))


def test_pictures_travel_as_png_with_the_exact_pixels() -> None:
    """A picture's pixels as JSON numbers made the units page's overview 3.4 MB on every run: picture figures
    carry a lossless PNG instead, decoding to exactly the picture given."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (12, 9, 3), dtype=np.uint8)
    for fig, expected in [
        (figures.rgb_figure(image, "x"), image),
        (figures.rgb_figure(image[..., 0]), np.repeat(image[..., :1], 3, axis=2)),
        (figures.boxed_image(image, (1, 1, 4, 4)), image),
    ]:
        (trace,) = fig.data
        assert trace.z is None
        np.testing.assert_array_equal(_png_pixels(trace), expected)
    mosaic = figures.tile_mosaic([image] * 64, [str(i) for i in range(64)])
    assert mosaic.data[0].z is None and len(mosaic.layout.annotations) == 64
    assert len(mosaic.to_json()) < 400_000  # 64 tiles of 64 px


def test_many_tiles_are_numbered_in_one_go(monkeypatch) -> None:
    """Plotly's add_annotation copies every annotation already there on each call: one call per tile
    cost half a second per 64-tile figure, on every page run."""

    def one_at_a_time(*args, **kwargs):
        raise AssertionError("annotations added one by one")

    monkeypatch.setattr(go.Figure, "add_annotation", one_at_a_time)
    rng = np.random.default_rng(0)
    grid = figures.feature_grid(rng.random((64, 5, 5)))
    assert sorted(int(a.text) for a in grid.layout.annotations) == list(range(64))
    titled = figures.feature_grid(rng.random((3, 5, 5)), cols=3, titles=["a", "b", "c"])
    assert [a.text for a in titled.layout.annotations] == ["a", "b", "c"]
    assert len(figures.filter_grid(rng.random((16, 3, 3, 3))).layout.annotations) == 16
    assert len(figures.tile_mosaic([None] * 10, [str(i) for i in range(10)]).layout.annotations) == 10
