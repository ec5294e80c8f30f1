"""Integrated Gradients against captum's IntegratedGradients as oracle, and its completeness property."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients

from app.analyses import integrated_gradients as ig
from app.networks.loaded import LoadedModel
from tests.oracles import pearson, predicted, private_copy, real_input
from tests.test_faithfulness import SIDE, linear_model

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:captum.*")

# Every baseline on the Fashion CNN; one each on EfficientNet-Lite0 and the ResNet-18 standing in for a
# teacher's torchvision model (the baseline is only the path's start; the graphs are what differ).
CASES = [("fashion", 28, b) for b in ig.BASELINES] + [("lite", 64, "blurred"), ("resnet", 64, "noise")]


@pytest.mark.parametrize(("name", "side", "baseline"), CASES, ids=[f"{n}-{b}" for n, _, b in CASES])
def test_integrated_gradients_match_captum(request: pytest.FixtureRequest, name: str, side: int, baseline: str) -> None:
    model = request.getfixturevalue(name)
    x = real_input(model, side)
    target = predicted(model, x)
    steps = 12
    got = ig.integrated_gradients(model, x, target, baseline, steps, batch=5)
    base = ig.make_baseline(model, x, baseline)
    expected, delta = IntegratedGradients(private_copy(model)).attribute(
        x.clone(), base, target=target, n_steps=steps, method="gausslegendre", return_convergence_delta=True
    )
    expected = expected[0].numpy()
    assert got.attributions.shape == expected.shape == tuple(x.shape[1:])
    assert pearson(got.attributions, expected) >= 0.999
    big = np.abs(expected) > 0.01 * np.abs(expected).max()
    assert big.sum() > 10 and np.array_equal(np.sign(got.attributions[big]), np.sign(expected[big]))
    scale = abs(got.score - got.baseline_score) + 1
    assert got.delta == pytest.approx(float(delta), abs=1e-3 * scale)


def test_completeness_improves_with_steps(fashion: LoadedModel) -> None:
    """Sum of attributions -> f(x) - f(baseline) as the integral gets finer: the delta is a real error."""
    x = real_input(fashion, 28)
    target = predicted(fashion, x)
    coarse, fine = (ig.integrated_gradients(fashion, x, target, "black", n) for n in (4, 128))
    assert abs(fine.delta) < abs(coarse.delta) / 10
    assert fine.relative_delta < 0.01 < coarse.relative_delta


def test_linear_model_is_exact_by_hand() -> None:
    """For f(x) = w . x, IG = (x - b) * w with zero error at any number of steps."""
    model, w = linear_model()
    x = torch.randn(1, 1, SIDE, SIDE, generator=torch.Generator().manual_seed(3))
    got = ig.integrated_gradients(model, x, 0, "noise", 3, seed=5)
    base = torch.from_numpy(got.baseline)
    np.testing.assert_allclose(got.attributions, ((x[0] - base) * w).numpy(), rtol=1e-5, atol=1e-6)
    assert abs(got.delta) < 1e-4


def test_progress_and_batches(fashion: LoadedModel) -> None:
    x = real_input(fashion, 28)
    calls: list[tuple[int, int]] = []
    one = ig.integrated_gradients(fashion, x, 1, "blurred", 10, progress=lambda i, n: calls.append((i, n)), batch=4)
    assert calls == [(4, 10), (8, 10), (10, 10)]
    other = ig.integrated_gradients(fashion, x, 1, "blurred", 10, batch=10)
    np.testing.assert_allclose(one.attributions, other.attributions, rtol=1e-4, atol=1e-6)


def test_baselines_and_bad_arguments(fashion: LoadedModel) -> None:
    x = real_input(fashion, 28)
    black = ig.make_baseline(fashion, x, "black")
    np.testing.assert_allclose(fashion.denormalise(black).numpy(), 0, atol=1e-6)
    noise = fashion.denormalise(ig.make_baseline(fashion, x, "noise"))
    assert 0.3 < float(noise.mean()) < 0.7
    with pytest.raises(ValueError, match="baseline"):
        ig.make_baseline(fashion, x, "white")
    with pytest.raises(ValueError, match="steps"):
        ig.integrated_gradients(fashion, x, 0, "black", 0)
