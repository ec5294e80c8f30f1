"""Models side by side: each network's top-5 and map, made comparable on one colour scale."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.analyses import attribution as attr
from app.analyses import compare
from app.networks.loaded import LoadedModel


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


def test_maps_of_different_sizes_become_shares_on_one_scale() -> None:
    small = np.zeros((28, 28), np.float32)
    small[10:14, 10:14] = 5.0  # a concentrated map, in the units of one network
    big = np.full((224, 224), 0.001, np.float32)  # a spread-out map, in another network's units
    zero = np.zeros((7, 7), np.float32)
    shares, top = compare.shared_scale([small, big, zero], side=112, percentile=100)
    assert [s.shape for s in shares] == [(112, 112)] * 3
    assert shares[0].sum() == pytest.approx(1.0, rel=1e-5)
    assert shares[1].sum() == pytest.approx(1.0, rel=1e-5)
    assert not shares[2].any()
    np.testing.assert_allclose(shares[1], 1 / 112**2, rtol=1e-4)  # uniform: every pixel the same share
    assert top == pytest.approx(float(shares[0].max()))  # the concentrated map sets the scale
    # the raw units do not matter: the same pattern at another scale gives the same shares
    again, _ = compare.shared_scale([small * 1000, big, zero], side=112, percentile=100)
    np.testing.assert_allclose(again[0], shares[0], rtol=1e-5)


def test_the_scale_ignores_a_few_extreme_pixels_below_100_percent() -> None:
    spiky = np.ones((50, 50), np.float32)
    spiky[0, 0] = 1e6
    _, top = compare.shared_scale([spiky, np.ones((50, 50), np.float32)], side=50, percentile=99)
    _, top_all = compare.shared_scale([spiky, np.ones((50, 50), np.float32)], side=50, percentile=100)
    assert top < top_all
    assert top == pytest.approx(1 / 2500, rel=1e-3)  # the plain map's share per pixel
