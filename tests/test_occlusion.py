"""Occlusion engine: positions and per-pixel attribution against captum, incremental inference
against brute force, bf16 fidelity against fp32, and the derived maps against hand computations."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from captum.attr import Occlusion
from torch import nn

from app.analyses.occlusion import (
    OcclusionResult,
    axis_starts,
    captum_attribution,
    estimate_seconds,
    make_baseline,
    occluded_image,
    occluder_boxes,
    occlusion_map,
    pixel_map,
    predicted_class_map,
    prob_drop_map,
    probabilities,
    target_prob_map,
    top_k_map,
)
from app.networks.datasets import load_fashion_mnist
from app.networks.layers import layer_table
from app.networks.loaded import LoadedModel
from tests.conftest import photo


def _captum_boxes(h: int, w: int, window: tuple[int, int], stride: tuple[int, int]) -> set[tuple[int, ...]]:
    """The boxes captum's Occlusion hides, read off the inputs it feeds the model (ones, hidden with 0)."""
    seen: list[torch.Tensor] = []

    def forward(inp: torch.Tensor) -> torch.Tensor:
        seen.extend(inp[:, 0] == 0)
        return inp.sum(dim=(1, 2, 3))

    Occlusion(forward).attribute(
        torch.ones(1, 1, h, w), sliding_window_shapes=(1, *window), strides=(1, *stride), baselines=0.0
    )
    boxes = set()
    for mask in seen:
        if mask.any():
            rows, cols = mask.any(1).nonzero().ravel(), mask.any(0).nonzero().ravel()
            assert int(mask.sum()) == len(rows) * len(cols)  # a solid rectangle
            boxes.add((int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1))
    return boxes


@pytest.mark.parametrize(
    ("size", "window", "stride"),
    [
        ((28, 28), 5, 1),
        ((28, 28), 5, 2),
        ((28, 28), 7, 3),
        ((10, 13), (4, 3), (3, 2)),
        ((12, 12), 12, 5),
        ((9, 9), 4, 4),
    ],
)
def test_positions_match_captum(size, window, stride):
    w2 = window if isinstance(window, tuple) else (window, window)
    s2 = stride if isinstance(stride, tuple) else (stride, stride)
    ours = occluder_boxes(size, window, stride)
    assert {tuple(int(v) for v in b) for b in ours.reshape(-1, 4)} == _captum_boxes(*size, w2, s2)
    assert len(ours.reshape(-1, 4)) == len(_captum_boxes(*size, w2, s2))


def test_last_window_is_clipped_and_bad_geometry_is_refused():
    assert axis_starts(28, 5, 2).tolist() == list(range(0, 25, 2))  # 24 + 5 > 28: clipped to 24..28
    assert occluder_boxes((28, 28), 5, 2)[-1, -1].tolist() == [24, 24, 28, 28]
    with pytest.raises(ValueError):
        axis_starts(28, 5, 6)  # would skip pixels; captum refuses it too
    with pytest.raises(ValueError):
        axis_starts(28, 29, 1)


def _captum(model: LoadedModel, x: torch.Tensor, target: int, window: int, stride: int, baseline) -> np.ndarray:
    c = model.channels
    with model.lock, torch.no_grad():
        attr = Occlusion(model.module).attribute(
            x,
            target=target,
            sliding_window_shapes=(c, window, window),
            strides=(c, stride, stride),
            baselines=baseline,
            perturbations_per_eval=16,
        )
    assert torch.allclose(attr, attr[:, :1].expand_as(attr))  # the window spans all channels
    return attr[0, 0].numpy()


def _assert_matches_captum(model, x, window, stride, baseline):
    result = occlusion_map(model, x, window, stride, baseline=baseline, precision="exact")
    target = int(result.base_logits.argmax())
    expected = _captum(model, x, target, window, stride, baseline)
    got = captum_attribution(result, target, x.shape[-2:])
    score_range = float(result.logits[..., target].max() - result.logits[..., target].min())
    assert score_range > 0
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * score_range)


@pytest.mark.parametrize(("window", "stride"), [pytest.param(5, 1, marks=pytest.mark.slow), (5, 2), (6, 4), (7, 3)])
def test_exact_equals_captum_on_fashion(fashion, window, stride):
    x = fashion.preprocess(photo((28, 28), seed=1))
    _assert_matches_captum(fashion, x, window, stride, 0.0)


def test_exact_equals_captum_with_a_tensor_baseline(fashion):
    x = fashion.preprocess(photo((28, 28), seed=2))
    _assert_matches_captum(fashion, x, 5, 3, make_baseline(fashion, x, "blur"))


@pytest.mark.slow
def test_exact_equals_captum_on_vgg_large_window(vgg):
    # 9 positions, the last row and column clipped (224 - 100 is not a multiple of 64)
    x = vgg.preprocess(photo((260, 240), seed=3))
    _assert_matches_captum(vgg, x, 100, 64, make_baseline(vgg, x, "grey"))


@pytest.mark.slow
def test_exact_equals_captum_on_vgg_window_32_stride_16(vgg):
    x = vgg.preprocess(photo((260, 240), seed=4))
    _assert_matches_captum(vgg, x, 32, 16, 0.0)


class _Toy(nn.Module):
    """A small chain with every geometry the incremental engine handles: padding 0/1/2, stride 2,
    dilation, groups, batch norm, max-pool with padding, rectangular maps."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(2, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, stride=2, padding=2, dilation=2, groups=2),
            nn.ReLU(),
            nn.MaxPool2d(3, stride=2, padding=1),
            nn.Conv2d(8, 6, 2),
            nn.ReLU(),
        )
        self.head = nn.Linear(6 * 4 * 6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(x), 1))


def _toy_model() -> LoadedModel:
    torch.manual_seed(0)
    net = _Toy()
    with torch.no_grad():
        bn = net.features[1]
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    net = net.eval().to(memory_format=torch.channels_last)
    labels = tuple("abcde")
    model = LoadedModel("toy", "toy", net, labels, 20, (0.5, 0.5), (0.25, 0.25), "random", False, torch.device("cpu"))
    model.layers = layer_table(net, (2, 20, 26))  # as get_model does: the analyses walk the load-time trace
    return model


@pytest.mark.parametrize(("window", "stride"), [(3, 2), (4, 3), ((5, 2), (2, 2)), (7, 5), ((20, 3), (1, 3))])
def test_incremental_equals_brute_force_on_a_tricky_chain(window, stride):
    model = _toy_model()
    torch.manual_seed(1)
    x = torch.randn(1, 2, 20, 26)
    fill = torch.randn(1, 2, 20, 26)
    result = occlusion_map(model, x, window, stride, baseline=fill, precision="exact", batch_size=7)
    for iy in range(result.grid[0]):
        for ix in range(result.grid[1]):
            y0, x0, y1, x1 = result.boxes[iy, ix]
            occluded = x.clone()
            occluded[..., y0:y1, x0:x1] = fill[..., y0:y1, x0:x1]
            with torch.no_grad():
                expected = model.module(occluded)[0].numpy()
            np.testing.assert_allclose(result.logits[iy, ix], expected, rtol=1e-5, atol=1e-5)


def test_incremental_equals_whole_image_recomputation(fashion):
    x = fashion.preprocess(photo((28, 28), seed=5))
    fast = occlusion_map(fashion, x, 5, 1, baseline="mean", precision="exact")
    plain = occlusion_map(fashion, x, 5, 1, baseline="mean", precision="exact", incremental=False)
    np.testing.assert_allclose(fast.logits, plain.logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fast.base_logits, fashion.logits(x, "exact")[0].numpy(), rtol=1e-5, atol=1e-5)


def _fidelity(model, x, window, stride, fast="auto"):
    exact = occlusion_map(model, x, window, stride, precision="exact")
    auto = occlusion_map(model, x, window, stride, precision=fast)
    target = int(exact.base_logits.argmax())
    pearson = np.corrcoef(exact.logits[..., target].ravel(), auto.logits[..., target].ravel())[0, 1]
    agree = (predicted_class_map(exact) == predicted_class_map(auto)).mean()
    return pearson, agree, exact


def test_auto_precision_keeps_the_maps_on_fashion(fashion):
    # "auto" keeps this small network in fp32 (bf16 does not pay there), so bf16 itself is tested:
    # a real test-set pullover whose class map has two classes.
    images, _ = load_fashion_mnist("test")
    x = ((torch.as_tensor(images[4]).float() / 255 - fashion.mean[0]) / fashion.std[0])[None, None]
    assert occlusion_map(fashion, x, 8, 2).precision == "fp32"
    pearson, agree, exact = _fidelity(fashion, x, 8, 2, fast="bf16")
    assert len(np.unique(predicted_class_map(exact))) >= 2  # the class map has something to get wrong
    assert pearson >= 0.99 and agree >= 0.97


@pytest.mark.slow
def test_auto_precision_keeps_the_maps_on_vgg(vgg):
    # Untrained VGG-16: logits are nearly flat (range ~0.04, median top-2 margin ~0.006 against a bf16 error
    # of ~0.002), so this is a harder test of the class map than a trained network would be.
    pearson, agree, exact = _fidelity(vgg, vgg.preprocess(photo((320, 240))), 64, 32)
    assert len(np.unique(predicted_class_map(exact))) >= 2
    assert pearson >= 0.99 and agree >= 0.97


def test_maps_derive_from_the_logits():
    boxes = occluder_boxes((4, 6), 2, 2)
    logits = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32)
    r = OcclusionResult(logits, np.array([3.0, 1.0, 0.0, 0.0], np.float32), boxes, (2, 2), (2, 2))
    p = probabilities(r)
    np.testing.assert_allclose(p.sum(-1), 1, rtol=1e-6)
    np.testing.assert_allclose(p[1, 2], np.exp(logits[1, 2]) / np.exp(logits[1, 2]).sum(), rtol=1e-5)
    base_p = np.exp([3.0, 1.0, 0.0, 0.0]) / np.exp([3.0, 1.0, 0.0, 0.0]).sum()
    np.testing.assert_allclose(prob_drop_map(r, 0), base_p[0] - target_prob_map(r, 0), rtol=1e-5)
    assert (predicted_class_map(r) == logits.argmax(-1)).all()
    idx, top = top_k_map(r, 3)
    assert (idx[..., 0] == logits.argmax(-1)).all() and (np.diff(top, axis=-1) <= 0).all()
    # non-overlapping 2x2 windows: each pixel takes its own window's value
    np.testing.assert_array_equal(
        pixel_map(r, np.arange(6.0).reshape(2, 3), (4, 6))[::2, ::2], np.arange(6.0).reshape(2, 3)
    )


def test_pixel_map_averages_overlapping_windows():
    boxes = occluder_boxes((1, 4), (1, 2), 1)  # windows [0,2) [1,3) [2,4)
    r = OcclusionResult(np.zeros((1, 3, 2), np.float32), np.zeros(2, np.float32), boxes, (1, 2), (1, 1))
    got = pixel_map(r, np.array([[1.0, 2.0, 4.0]]), (1, 4))
    np.testing.assert_allclose(got, [[1.0, 1.5, 3.0, 4.0]])


def test_occluded_image_shows_the_fill_inside_the_box_only(fashion):
    x = fashion.preprocess(photo((28, 28), seed=7))
    result = occlusion_map(fashion, x, 6, 4, baseline="grey")
    img = occluded_image(fashion, x, result, 2, 3, "grey")
    y0, x0, y1, x1 = result.boxes[2, 3]
    assert img.shape == (28, 28, 3) and img.dtype == np.uint8
    assert (img[y0:y1, x0:x1] == 128).all()
    original = (fashion.denormalise(x)[0].numpy() * 255).round().astype(np.uint8)
    outside = np.ones((28, 28), bool)
    outside[y0:y1, x0:x1] = False
    assert (img[..., 0][outside] == original[outside]).all()


def test_fills(vgg):
    x = vgg.preprocess(photo((224, 224), seed=8))
    assert torch.equal(make_baseline(vgg, x, "zero"), torch.zeros_like(x))
    mean = make_baseline(vgg, x, "mean")
    torch.testing.assert_close(mean[0, :, 5, 7], x.mean(dim=(2, 3))[0])
    grey = vgg.denormalise(make_baseline(vgg, x, "grey"))
    torch.testing.assert_close(grey, torch.full_like(grey, 0.5))
    blur = make_baseline(vgg, x, "blur")
    assert blur.shape == x.shape and blur.diff(dim=-1).abs().amax() < x.diff(dim=-1).abs().amax() / 4  # disc edge
    with pytest.raises(ValueError):
        make_baseline(vgg, x, "pink")


def test_threads_get_sequential_results(fashion):
    images = [fashion.preprocess(photo((28, 28), seed=s)) for s in range(4)]
    state = {k: v.clone() for k, v in fashion.module.state_dict().items()}
    sequential = [occlusion_map(fashion, x, 5, 3).logits for x in images]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda x: occlusion_map(fashion, x, 5, 3).logits, images))
    for a, b in zip(sequential, parallel, strict=True):
        np.testing.assert_array_equal(a, b)
    for k, v in fashion.module.state_dict().items():
        assert torch.equal(v, state[k])


def test_progress_and_estimate(fashion):
    calls = []
    x = fashion.preprocess(photo((28, 28)))
    occlusion_map(fashion, x, 5, 1, progress=lambda done, total: calls.append((done, total)), batch_size=100)
    assert calls == [(min(k, 576), 576) for k in range(100, 677, 100)]
    small, big = estimate_seconds(fashion, 5, 4), estimate_seconds(fashion, 5, 1)
    assert 0 < small < big < 60
