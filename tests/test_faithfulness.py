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
from app.serving import precision as prec
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


def by_hand(model: LoadedModel, x: torch.Tensor, contributions: np.ndarray, order: np.ndarray) -> tuple:
    """The linear model's curves, one pixel per step, when pixels go in `order` (flat indices): deleting
    pixel i lowers the class-0 logit by its contribution c_i, inserting it raises the blurred image's."""
    fill = occlusion.make_baseline(model, x, "blur")
    moved = np.concatenate([[0], np.cumsum(contributions.ravel()[order])])
    logit_x, logit_fill = float(model.logits(x)[0, 0]), float(model.logits(fill)[0, 0])
    return 1 / (1 + np.exp(-(logit_x - moved))), 1 / (1 + np.exp(-(logit_fill + moved)))


def assert_curves(curves: faith.Curves, expected: tuple) -> None:
    np.testing.assert_allclose(curves.deletion, expected[0], atol=1e-5)
    np.testing.assert_allclose(curves.insertion, expected[1], atol=1e-5)
    np.testing.assert_allclose(curves.fractions, np.linspace(0, 1, len(expected[0])))


def test_linear_model_curves_by_hand() -> None:
    model, x, perfect = linear_case()
    curves = faith.deletion_insertion(model, x, perfect, 0, steps=SIDE * SIDE, precision="fp32", batch=7)
    assert_curves(curves, by_hand(model, x, perfect, np.argsort(-perfect.ravel())))


def test_occlusion_map_curves_by_hand() -> None:
    """One-pixel windows with the blurred fill: hiding pixel i lowers P(class 0) from sigmoid(l) to
    sigmoid(l - c_i), a drop that grows with c_i, so the occlusion map ranks the pixels exactly as the
    perfect map does, and its curves are the perfect curves."""
    model, x, perfect = linear_case()
    got = xp.scored(
        model, x, "occlusion", 0, steps=SIDE * SIDE, window=1, stride=1, fill="blur", occlusion_precision="exact"
    )
    p = float(torch.softmax(model.logits(x), 1)[0, 0])
    np.testing.assert_allclose(got.values, p - 1 / (1 + np.exp(-(np.log(p / (1 - p)) - perfect))), atol=1e-6)
    assert_curves(got.curves, by_hand(model, x, perfect, np.argsort(-perfect.ravel())))


def test_smoothgrad_map_curves_by_hand() -> None:
    """The gradient of a linear logit is its weight w wherever the image is, so SmoothGrad's mean |gradient|
    over noisy copies is |w|: the pixels go in the order of |w| (not of their contribution w (x - fill))."""
    model, x, perfect = linear_case()
    w = model.module[1].weight[0].detach().reshape(SIDE, SIDE).numpy()
    got = xp.scored(model, x, "SmoothGrad", 0, steps=SIDE * SIDE, samples=8, noise=0.3)
    np.testing.assert_allclose(got.values, np.abs(w), rtol=1e-5)
    order = np.argsort(-np.abs(w).ravel())
    assert not np.array_equal(order, np.argsort(-perfect.ravel()))  # else this would test nothing new
    assert_curves(got.curves, by_hand(model, x, perfect, order))
    best = faith.deletion_insertion(model, x, perfect, 0, steps=SIDE * SIDE, precision="fp32")
    assert got.curves.score < best.score


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


def test_precision_timings_are_measured_once_alternately_keeping_the_fastest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prec, "bf16_fast", lambda device_type: True)
    runs: list[str] = []

    def run(p: str) -> float:
        runs.append(p)
        return {"fp32": 2.0, "bf16": 1.0}[p] + 0.1 * len(runs)  # a busy machine: later runs slower

    key = ("test", object())
    assert prec.timings(key, run) == {"fp32": 2.1, "bf16": 1.2}
    assert prec.timings(key, run) == {"fp32": 2.1, "bf16": 1.2} and runs == ["fp32", "bf16", "fp32", "bf16"]
    monkeypatch.setattr(prec, "bf16_fast", lambda device_type: False)
    assert prec.timings(("test", object()), run) == {"fp32": pytest.approx(2.5)}  # no bf16 where it is emulated


@pytest.mark.parametrize(("fp32", "bf16", "chosen"), [(1.0, 2.0, "fp32"), (2.0, 1.0, "bf16")])
def test_auto_precision_is_the_measured_faster_one_on_a_big_network(
    vgg: LoadedModel, monkeypatch: pytest.MonkeyPatch, fp32: float, bf16: float, chosen: str
) -> None:
    monkeypatch.setattr(prec, "timings", lambda key, run: {"fp32": fp32, "bf16": bf16})
    monkeypatch.setattr(prec, "bf16_fast", lambda device_type: True)
    assert faith.resolve_precision(vgg) == chosen
    assert faith.resolve_precision(vgg, "fp32") == "fp32"


def test_auto_precision_keeps_small_networks_and_fp32_models_in_fp32(
    fashion: LoadedModel, lite: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No measurement where the rules already say fp32: the Fashion CNN is too small for bf16 to pay,
    and EfficientNet-Lite0 keeps its bulk analyses in fp32 (its predictions move in bf16)."""

    def no_measuring(key: object, run: object) -> dict[str, float]:
        raise AssertionError("measured")

    monkeypatch.setattr(prec, "timings", no_measuring)
    assert faith.resolve_precision(fashion) == "fp32"
    assert faith.resolve_precision(lite) == "fp32"
