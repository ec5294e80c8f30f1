"""Figure conventions: the colours a figure draws and the words a caption uses come from one place."""

from __future__ import annotations

import re

import numpy as np
from plotly.colors import get_colorscale, unlabel_rgb

from app import figures


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
