"""Layer playground ops against hand-computed small cases (expected arrays written out by hand)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from app.analyses import playground as pg
from app.base.numeric import softmax

# 4x4 test map, values chosen so every window has a unique maximum.
X = np.array(
    [
        [1, 2, 0, 3],
        [4, 6, 5, 1],
        [0, 2, 9, 8],
        [7, 1, 3, 2],
    ],
    dtype=np.float32,
)


def test_presets_are_3x3() -> None:
    assert set(pg.KERNELS) == {"identity", "edge (high-pass)", "Sobel x", "Sobel y", "blur", "sharpen", "emboss"}
    for k in pg.KERNELS.values():
        assert np.shape(k) == (3, 3)
    assert math.isclose(np.sum(pg.KERNELS["blur"]), 1.0)


def test_sobel_x_valid_convolution_by_hand() -> None:
    # Top-left window [[1,2,0],[4,6,5],[0,2,9]] · [[-1,0,1],[-2,0,2],[-1,0,1]]
    # = (-1 + 0) + (-8 + 10) + (0 + 9) = 10; the other three windows the same way.
    out = pg.convolve(X, pg.KERNELS["Sobel x"])
    np.testing.assert_allclose(out, [[10, -3], [15, 8]])


def test_identity_with_padding_keeps_the_map() -> None:
    np.testing.assert_allclose(pg.convolve(X, pg.KERNELS["identity"], padding=1), X)


def test_edge_kernel_zero_padding_at_corner() -> None:
    # Corner (0,0) with zero padding: 8*1 - (2 + 4 + 6) = -4.
    assert pg.convolve(X, pg.KERNELS["edge (high-pass)"], padding=1)[0, 0] == pytest.approx(-4)


def test_user_kernel_and_stride() -> None:
    kernel = [[0, 0, 0], [0, 0, 0], [0, 0, 2]]  # 2 * bottom-right pixel of each window
    np.testing.assert_allclose(pg.convolve(X, kernel, padding=1, stride=2), [[12, 2], [2, 4]])


def test_relu() -> None:
    np.testing.assert_array_equal(pg.relu(np.array([[-2.5, 0.0], [3.0, -0.1]])), [[0, 0], [3, 0]])


def test_max_and_average_pool_2x2_stride_2() -> None:
    np.testing.assert_array_equal(pg.pool(X, "max"), [[6, 5], [7, 9]])
    np.testing.assert_allclose(pg.pool(X, "avg"), [[13 / 4, 9 / 4], [10 / 4, 22 / 4]])


def test_overlapping_pool_window_3_stride_1() -> None:
    np.testing.assert_array_equal(pg.pool(X, "max", window=3, stride=1), [[9, 9], [9, 9]])
    np.testing.assert_allclose(pg.pool(X, "avg", window=3, stride=1), [[29 / 9, 36 / 9], [37 / 9, 37 / 9]])


def test_gap_leaving_pool_window_1_stride_2() -> None:
    np.testing.assert_array_equal(pg.pool(X, "max", window=1, stride=2), [[1, 0], [0, 9]])


def test_pool_coverage_overlap_and_gaps() -> None:
    np.testing.assert_array_equal(
        pg.pool_coverage((4, 4), window=3, stride=1),
        [[1, 2, 2, 1], [2, 4, 4, 2], [2, 4, 4, 2], [1, 2, 2, 1]],
    )
    np.testing.assert_array_equal(
        pg.pool_coverage((5, 5), window=2, stride=3),
        [
            [1, 1, 0, 1, 1],
            [1, 1, 0, 1, 1],
            [0, 0, 0, 0, 0],
            [1, 1, 0, 1, 1],
            [1, 1, 0, 1, 1],
        ],
    )
    np.testing.assert_array_equal(pg.pool_coverage((5, 5), window=2, stride=2)[4], [0, 0, 0, 0, 0])


def test_global_average_pool() -> None:
    stack = np.stack([X, np.full((4, 4), 2.0, np.float32), -X])
    np.testing.assert_allclose(pg.global_average_pool(stack), [54 / 16, 2, -54 / 16])


def test_feature_stack_is_conv_then_relu_per_kernel() -> None:
    kernels = {"id": pg.KERNELS["identity"], "neg": ((0, 0, 0), (0, -1, 0), (0, 0, 0))}
    stack = pg.feature_stack(X - 4, kernels)
    np.testing.assert_array_equal(stack[0], np.maximum(X - 4, 0))
    np.testing.assert_array_equal(stack[1], np.maximum(4 - X, 0))


def test_backward_through_max_pool_goes_to_the_winner_only() -> None:
    grad = pg.pool_backward(X, "max", 2, 2, (1, 1))  # window rows 2-3, cols 2-3: winner 9 at (2, 2)
    expected = np.zeros((4, 4))
    expected[2, 2] = 1
    np.testing.assert_array_equal(grad, expected)


def test_backward_through_avg_pool_spreads_one_over_n_squared() -> None:
    grad = pg.pool_backward(X, "avg", 3, 1, (0, 1))  # rows 0-2, cols 1-3
    expected = np.zeros((4, 4))
    expected[0:3, 1:4] = 1 / 9
    np.testing.assert_allclose(grad, expected)


def test_fully_connected_by_hand() -> None:
    w = np.array([[1, 0, -1], [0.5, 2, 0]])
    np.testing.assert_allclose(pg.fully_connected(np.array([3, 1, 2]), w, np.array([0.5, -1])), [1.5, 2.5])


def test_softmax_temperature() -> None:
    np.testing.assert_allclose(softmax(np.log([1.0, 2.0, 3.0])), [1 / 6, 2 / 6, 3 / 6], rtol=1e-6)
    np.testing.assert_allclose(softmax(np.array([0.0, 2 * math.log(2)]), temperature=2), [1 / 3, 2 / 3], rtol=1e-6)
    with pytest.raises(ValueError):
        softmax(np.zeros(3), temperature=0)


def test_last_layer_matches_the_network(fashion_untrained) -> None:
    torch.manual_seed(1)
    x = torch.randn(1, 1, 28, 28)
    parts = pg.last_layer(fashion_untrained, x)
    assert parts["features"].shape == (128,) and parts["weight"].shape == (10, 128)
    np.testing.assert_allclose(parts["logits"], fashion_untrained.logits(x, "fp32")[0].numpy(), atol=1e-5)


def test_normalisation_by_hand() -> None:
    stages = pg.normalisation(np.array([[0, 51], [255, 255]], np.uint8), mean=0.2, std=0.4, bins=4)
    np.testing.assert_allclose(stages["0–1"]["values"], [[0, 0.2], [1, 1]])
    np.testing.assert_allclose(stages["standardised"]["values"], [[-0.5, 0], [2, 2]], atol=1e-6)
    np.testing.assert_array_equal(stages["0–255"]["counts"], [2, 0, 0, 2])  # bins of 63.75: 0 and 51 in the first
    np.testing.assert_allclose(stages["standardised"]["edges"], [-0.5, 0.125, 0.75, 1.375, 2.0])
    np.testing.assert_array_equal(stages["standardised"]["counts"], [2, 0, 0, 2])


def test_normalisation_histograms_count_every_pixel() -> None:
    """Fashion-MNIST's own mean/std: float32 rounding at the lower edge once dropped most black pixels."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (28, 28)).astype(np.uint8)
    pixels[:20] = 0  # a dark background, as in every Fashion-MNIST sample
    pixels[-1, -4:] = 255
    stages = pg.normalisation(pixels, mean=0.2860, std=0.3530)
    for name, stage in stages.items():
        assert stage["counts"].sum() == pixels.size, name
    np.testing.assert_array_equal(stages["standardised"]["counts"], stages["0–255"]["counts"])
    np.testing.assert_array_equal(stages["0–1"]["counts"], stages["0–255"]["counts"])


def test_grey_array_and_crop() -> None:
    img = Image.new("RGB", (400, 200), (255, 0, 0))  # L = 0.299 * 255 = 76
    grey = pg.grey_array(img, max_side=100)
    assert grey.shape == (50, 100) and grey[0, 0] == 76
    assert pg.crop(grey, 48, 97).shape == (8, 8)  # clamped inside the map
    np.testing.assert_array_equal(pg.crop(X, 1, 1, size=2), [[6, 5], [2, 9]])


def test_teaching_cell_has_one_clear_winner_or_the_largest_sum() -> None:
    # windows of X (2x2, stride 2): max minus runner-up 6-4=2, 5-3=2, 7-2=5, 9-8=1; sums 13, 9, 10, 22
    assert pg.teaching_cell(X, "max", 2, 2) == (1, 0)
    assert pg.teaching_cell(X, "avg", 2, 2) == (1, 1)
    assert pg.tie_count(X, 2, 2, (1, 0)) == 1
    zeros = np.zeros((6, 6), dtype=np.float32)
    assert pg.teaching_cell(zeros, "max", 2, 2) == (1, 1)  # nothing to choose: the centre
    assert pg.tie_count(zeros, 2, 2, (1, 1)) == 4
