"""Models side by side: each network's top-5 and map, made comparable on one colour scale."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.analyses import attribution as attr
from app.analyses import compare
from app.networks.loaded import LoadedModel
from app.pictures import comparisons


def test_a_view_is_the_top5_and_the_map_of_the_top_class(fashion: LoadedModel) -> None:
    x = torch.rand(1, 1, 28, 28)
    probs = torch.softmax(fashion.logits(x)[0], 0)
    for method in compare.METHODS:
        view = compare.model_view(fashion, x, method)
        assert [label for label, _ in view.top5] == [label for label, _ in fashion.top_k(x)]
        assert view.target == int(probs.argmax())
        assert sum(p for _, p in view.top5) <= 1.0 + 1e-6
        maps = attr.class_maps(fashion, x, view.target)
        expected = attr.magnitude(maps[method]) if maps[method].ndim == 3 else maps[method]
        np.testing.assert_allclose(view.raw, expected, rtol=1e-5, atol=1e-8)
        assert view.raw.shape == (28, 28) and (view.raw >= 0).all()


def test_an_unknown_method_is_refused(fashion: LoadedModel) -> None:
    with pytest.raises(ValueError, match="method"):
        compare.model_view(fashion, torch.rand(1, 1, 28, 28), "occlusion")


def test_maps_of_different_sizes_become_comparable_on_one_scale() -> None:
    small = np.zeros((28, 28), np.float32)
    small[10:14, 10:14] = 5.0  # a concentrated map, in the units of one network
    big = np.full((224, 224), 0.001, np.float32)  # a spread-out map, in another network's units
    zero = np.zeros((7, 7), np.float32)
    scaled, top = compare.shared_scale([small, big, zero], side=112, percentile=100)
    assert [s.shape for s in scaled] == [(112, 112)] * 3
    assert scaled[0].mean() == pytest.approx(1.0, rel=1e-5)  # 1 = the average pixel of its own map
    np.testing.assert_allclose(scaled[1], 1.0, rtol=1e-4)  # uniform: every pixel is average
    assert not scaled[2].any()
    assert top == pytest.approx(float(scaled[0].max()))  # the concentrated map sets the scale
    assert top > 30  # 16 of 784 pixels hold it all: about 49x the average
    # the raw units do not matter: the same pattern at another scale gives the same values
    again, _ = compare.shared_scale([small * 1000, big, zero], side=112, percentile=100)
    np.testing.assert_allclose(again[0], scaled[0], rtol=1e-5)


def test_the_scale_ignores_a_few_extreme_pixels_below_100_percent() -> None:
    spiky = np.ones((50, 50), np.float32)
    spiky[0, 0] = 1e6
    _, top = compare.shared_scale([spiky, np.ones((50, 50), np.float32)], side=50, percentile=99)
    _, top_all = compare.shared_scale([spiky, np.ones((50, 50), np.float32)], side=50, percentile=100)
    assert top < top_all
    assert top == pytest.approx(1.0, rel=1e-3)  # the plain map's pixels: all average


def test_the_side_by_side_figure_has_one_colour_scale_for_all_maps() -> None:
    maps = [np.random.default_rng(i).random((16, 16)) for i in range(3)]
    fig = comparisons.shared_scale_maps(maps, ["a", "b", "c"], top=0.8)
    assert [t.coloraxis for t in fig.data] == ["coloraxis"] * 3
    assert (fig.layout.coloraxis.cmin, fig.layout.coloraxis.cmax) == (0.0, 0.8)
    assert [a.text for a in fig.layout.annotations] == ["a", "b", "c"]


@pytest.mark.parametrize(("stages", "bands"), [(5, 1), (7, 1), (11, 2)])
def test_the_cascade_grid_wraps_long_cascades_into_even_bands(stages: int, bands: int) -> None:
    maps = {m: np.random.default_rng(0).random((stages, 20, 20)) for m in ("gradient", "Grad-CAM")}
    names = tuple(f"s{i}" for i in range(stages))
    fig = comparisons.cascade_grid(maps, names, side=20)
    labels = [a.text for a in fig.layout.annotations]
    assert [t for t in labels if t.startswith("s")] == list(names)
    assert labels.count("<b>gradient</b>") == bands
