"""The step-by-step convolution, pooling, ReLU and backward passes equal PyTorch's own ops and autograd."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from app.analyses import playground as pg
from app.analyses import stepper as S

# (input side, kernel, stride, padding, dilation): stride > 1 with leftover rows, dilation, wide padding
CASES = [
    (8, 3, 1, 0, 1),
    (8, 3, 1, 1, 1),
    (9, 3, 2, 1, 1),
    (10, 3, 2, 0, 1),  # (10 - 3) is odd: the last row and column are never read
    (10, 3, 1, 2, 2),
    (11, 2, 3, 1, 1),
    (12, 5, 2, 2, 1),
    (9, 3, 3, 2, 2),
    (7, 1, 2, 0, 1),
]


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.tensor(a, dtype=torch.float64)[None, None]


@pytest.mark.parametrize(("n", "k", "s", "p", "d"), CASES)
def test_convolution_steps_equal_conv2d(n: int, k: int, s: int, p: int, d: int) -> None:
    rng = np.random.default_rng(n * 100 + k * 10 + s)
    x, w = rng.normal(size=(n, n + 1)), rng.normal(size=(k, k))
    sweep = S.convolution(x, w, s, p, d)
    expected = F.conv2d(_t(x), _t(w), stride=s, padding=p, dilation=d)[0, 0].numpy()
    assert sweep.out.shape == expected.shape == (S.output_size(n, k, s, p, d), S.output_size(n + 1, k, s, p, d))
    np.testing.assert_allclose(sweep.out, expected, atol=1e-12)
    last = sweep.steps[-1]
    assert last.cell == (expected.shape[0] - 1, expected.shape[1] - 1)
    assert last.products.shape == (k, k) and last.total == pytest.approx(last.products.sum())
    # the window's values are the padded input's, at the positions the step names
    np.testing.assert_array_equal(last.values, np.pad(x, p)[np.ix_(last.rows, last.cols)])


def test_size_formula_is_worked_through() -> None:
    general, filled, worked, answer = S.size_formula(10, 3, 2, 1, 2)
    assert "H + 2p - d(k-1) - 1" in general
    assert r"\frac{10 + 2\cdot1 - 2\cdot(3-1) - 1}{2}" in filled
    assert worked == r"\left\lfloor \frac{7}{2} \right\rfloor + 1" and answer == "4"


def test_a_window_wider_than_the_input_is_a_friendly_error() -> None:
    with pytest.raises(S.ShapeError, match="spans 9 pixels"):
        S.convolution(np.zeros((6, 6)), np.zeros((5, 5)), dilation=2)


@pytest.mark.parametrize(
    ("n", "k", "s", "p", "d"), [(8, 2, 2, 0, 1), (9, 3, 2, 1, 1), (10, 3, 1, 1, 2), (7, 2, 1, 1, 1)]
)
def test_max_pool_steps_equal_max_pool2d(n: int, k: int, s: int, p: int, d: int) -> None:
    x = np.random.default_rng(n).normal(size=(n, n))
    x[0, :2] = 5.0  # a tie: PyTorch picks the first in reading order, and so must the steps
    pooling = S.max_pool(x, k, s, p, d)
    out, idx = F.max_pool2d(_t(x), k, s, p, d, return_indices=True)
    np.testing.assert_array_equal(pooling.out, out[0, 0].numpy())
    winners = [(r - p) * n + (c - p) for r, c in (step.winner for step in pooling.steps)]
    assert winners == idx[0, 0].flatten().tolist()


def test_pool_padding_over_half_the_window_is_refused() -> None:
    with pytest.raises(S.ShapeError, match="at most half"):
        S.max_pool(np.zeros((6, 6)), 2, 2, padding=2)


def test_relu_equals_torch() -> None:
    x = np.random.default_rng(1).normal(size=(6, 6))
    np.testing.assert_array_equal(S.relu(x), F.relu(_t(x))[0, 0].numpy())


@pytest.mark.parametrize(("n", "k", "s", "p", "d"), CASES)
def test_backward_steps_equal_autograd(n: int, k: int, s: int, p: int, d: int) -> None:
    rng = np.random.default_rng(n + k + s + p + d)
    x, w = rng.normal(size=(n, n)), rng.normal(size=(k, k))
    xt, wt = _t(x).requires_grad_(True), _t(w).requires_grad_(True)
    y = F.conv2d(xt, wt, stride=s, padding=p, dilation=d)
    g = S.upstream_example(tuple(y.shape[-2:]), seed=n)
    y.backward(_t(g))
    sweep, dx = S.input_gradient(g, w, x.shape, s, p, d)
    np.testing.assert_allclose(dx, xt.grad[0, 0].numpy(), atol=1e-12)
    assert sweep.out.shape == (n + 2 * p, n + 2 * p)
    np.testing.assert_array_equal(sweep.kernel, w[::-1, ::-1])  # the flipped kernel is what slides
    dw = S.kernel_gradient(x, g, k, s, p, d)
    np.testing.assert_allclose(dw.out, wt.grad[0, 0].numpy(), atol=1e-12)
    assert len(dw.steps) == k * k


def test_max_pool_backward_by_hand_equals_the_playgrounds_autograd() -> None:
    x = np.random.default_rng(3).normal(size=(8, 8)).astype(np.float32)
    pooling = S.max_pool(x, 3, 2)
    g = S.upstream_example(pooling.out.shape, seed=4)
    by_autograd = sum(
        g[i, j] * pg.pool_backward(x, "max", 3, 2, (i, j)) for i, j in itertools.product(*map(range, g.shape))
    )
    np.testing.assert_allclose(S.pool_autograd_gradient(x, 3, 2, g), by_autograd, atol=1e-6)
    np.testing.assert_allclose(S.max_pool_input_gradient(pooling, g), by_autograd, atol=1e-6)
    assert (S.max_pool_input_gradient(pooling, g) != 0).sum() <= g.size  # only winners get anything


def test_upstream_example_is_small_whole_numbers() -> None:
    g = S.upstream_example((5, 4), seed=2)
    assert g.shape == (5, 4) and set(np.unique(g)) <= {-2.0, -1.0, 0.0, 1.0, 2.0}


def test_the_pages_pytorch_answers_are_pytorchs() -> None:
    rng = np.random.default_rng(5)
    x, w = rng.normal(size=(7, 7)), rng.normal(size=(3, 3))
    np.testing.assert_allclose(S.torch_convolution(x, w, 2, 1, 1), S.convolution(x, w, 2, 1, 1).out, atol=1e-12)
    np.testing.assert_array_equal(S.torch_max_pool(x, 2, 1, 1, 1), S.max_pool(x, 2, 1, 1, 1).out)
    g = S.upstream_example((4, 4))
    dx, dw = S.autograd_gradients(x, w, g, 2, 1, 1)
    np.testing.assert_allclose(dx, S.input_gradient(g, w, x.shape, 2, 1, 1)[1], atol=1e-12)
    np.testing.assert_allclose(dw, S.kernel_gradient(x, g, 3, 2, 1, 1).out, atol=1e-12)


def test_busiest_crop_finds_the_only_edge() -> None:
    x = np.zeros((20, 30))
    x[12:, 21:] = 1.0  # one corner of a bright block
    top, left = S.busiest_crop(x, 8)
    assert top <= 12 < top + 8 and left <= 21 < left + 8
