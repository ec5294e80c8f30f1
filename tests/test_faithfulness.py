"""Deletion and insertion curves: a linear model whose answer is known, and a plain one-image loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from app.analyses import attribution as attr
from app.analyses import explanations as xp
from app.analyses import faithfulness as faith
from app.analyses import occlusion
from app.networks.layers import layer_table
from app.networks.loaded import LoadedModel
from tests.oracles import predicted, real_input
from tests.test_attribution import assert_module_untouched

SIDE = 6


def linear_model() -> tuple[LoadedModel, torch.Tensor]:
    """logit_0 = w . x, logit_1 = 0 on a 1x6x6 image: P(class 0) = sigmoid(w . x). Returns (model, w [1, 6, 6])."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(SIDE * SIDE, 2, bias=False))
    w = torch.randn(1, SIDE, SIDE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        net[1].weight.copy_(torch.stack([w.flatten(), torch.zeros(SIDE * SIDE)]))
    model = LoadedModel("linear", "linear", net.eval(), ("a", "b"), SIDE, (0.0,), (1.0,), "", True, torch.device("cpu"))
    model.layers = layer_table(net, (1, SIDE, SIDE))
    return model, w


def linear_case() -> tuple[LoadedModel, torch.Tensor, np.ndarray]:
    """(model, x, the perfect map): deleting pixel i moves the logit by w_i (fill_i - x_i), so ranking
    by c_i = w_i (x_i - fill_i) deletes (and inserts) the most evidence at every step."""
    model, w = linear_model()
    x = torch.randn(1, 1, SIDE, SIDE, generator=torch.Generator().manual_seed(1)) * 0.1
    fill = occlusion.make_baseline(model, x, "blur")
    assert 0.05 < float(torch.softmax(model.logits(x), 1)[0, 0]) < 0.95, "a saturated sigmoid would test nothing"
    return model, x, (w * (x - fill))[0, 0].numpy()


def test_area_by_hand() -> None:
    assert faith.area(np.array([1.0, 0.0])) == pytest.approx(0.5)
    assert faith.area(np.array([0.0, 1.0, 1.0])) == pytest.approx(0.75)
    assert faith.area(np.ones(51)) == pytest.approx(1.0)


def test_linear_model_curves_by_hand() -> None:
    model, x, perfect = linear_case()
    fill = occlusion.make_baseline(model, x, "blur")
    curves = faith.deletion_insertion(model, x, perfect, 0, steps=SIDE * SIDE, precision="fp32", batch=7)
    contributions = np.sort(perfect.ravel())[::-1]
    logit_x = float(model.logits(x)[0, 0])
    logit_fill = float(model.logits(fill)[0, 0])
    expected_del = 1 / (1 + np.exp(-(logit_x - np.concatenate([[0], np.cumsum(contributions)]))))
    expected_ins = 1 / (1 + np.exp(-(logit_fill + np.concatenate([[0], np.cumsum(contributions)]))))
    np.testing.assert_allclose(curves.deletion, expected_del, atol=1e-5)
    np.testing.assert_allclose(curves.insertion, expected_ins, atol=1e-5)
    np.testing.assert_allclose(curves.fractions, np.linspace(0, 1, SIDE * SIDE + 1))


def test_the_perfect_map_is_best_at_every_step_and_its_reverse_worst() -> None:
    """Monotone ordering: perfect <= any other ranking <= reversed for deletion, the opposite for insertion."""
    model, x, perfect = linear_case()
    rng = np.random.default_rng(0)
    runs = {
        name: faith.deletion_insertion(model, x, m, 0, steps=12, precision="fp32")
        for name, m in [("perfect", perfect), ("random", rng.random(perfect.shape)), ("reversed", -perfect)]
    }
    eps = 1e-6
    assert np.all(runs["perfect"].deletion <= runs["random"].deletion + eps)
    assert np.all(runs["random"].deletion <= runs["reversed"].deletion + eps)
    assert np.all(runs["perfect"].insertion >= runs["random"].insertion - eps)
    assert np.all(runs["random"].insertion >= runs["reversed"].insertion - eps)
    assert runs["perfect"].score > runs["random"].score > runs["reversed"].score


def one_at_a_time(model: LoadedModel, x: torch.Tensor, saliency: np.ndarray, target: int, steps: int):
    """The straightforward reference: one forward pass per image, pixels copied by index."""
    fill = occlusion.make_baseline(model, x, "blur")
    values = np.abs(saliency).max(0) if saliency.ndim == 3 else saliency
    order = np.argsort(-values.ravel(), kind="stable")
    h, w = values.shape
    curves = {"deletion": [], "insertion": []}
    for k in range(steps + 1):
        ys, xs = np.unravel_index(order[: round(k * h * w / steps)], (h, w))
        deleted, inserted = x.clone(), fill.clone()
        deleted[..., ys, xs] = fill[..., ys, xs]
        inserted[..., ys, xs] = x[..., ys, xs]
        for name, image in (("deletion", deleted), ("insertion", inserted)):
            with torch.no_grad():
                curves[name].append(float(torch.softmax(model.module(image), 1)[0, target]))
    return curves


@pytest.mark.parametrize("which", ["Grad-CAM", "guided backprop"])
def test_batched_curves_equal_a_one_image_loop(fashion: LoadedModel, which: str) -> None:
    x = real_input(fashion, 28)
    target = predicted(fashion, x)
    saliency = attr.class_maps(fashion, x, target)[which]
    calls: list[tuple[int, int]] = []
    got = faith.deletion_insertion(
        fashion, x, saliency, target, steps=20, precision="fp32", batch=16, progress=lambda i, n: calls.append((i, n))
    )
    expected = one_at_a_time(fashion, x, saliency, target, 20)
    np.testing.assert_allclose(got.deletion, expected["deletion"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got.insertion, expected["insertion"], rtol=1e-4, atol=1e-6)
    assert calls == [(16, 40), (32, 40), (40, 40)]
    assert got.precision == "fp32"


def test_bad_arguments_are_refused(fashion: LoadedModel) -> None:
    x = real_input(fashion, 28)
    with pytest.raises(ValueError, match="full-size"):
        faith.deletion_insertion(fashion, x, np.ones((14, 14)), 0)
    with pytest.raises(ValueError, match="steps"):
        faith.deletion_insertion(fashion, x, np.ones((28, 28)), 0, steps=0)
    with pytest.raises(ValueError, match="class index"):
        faith.deletion_insertion(fashion, x, np.ones((28, 28)), 10)


def test_new_methods_leave_no_state_on_the_shared_module(fashion: LoadedModel) -> None:
    """Every map and the curves run on private graphs or plain forward passes: no hooks, no .grad."""
    x = real_input(fashion, 28)
    for method in xp.METHODS:
        xp.scored(fashion, x, method, 3, steps=4, path_steps=4)
    assert_module_untouched(fashion)
