"""The sanity check (cascading randomisation) works on a copy, and reproduces Adebayo et al.'s result."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.analyses import attribution as attr
from app.analyses import sanity
from app.base.errors import Cancelled
from app.networks.images import load_image
from app.networks.loaded import LoadedModel
from app.networks.samples import sample_bytes, samples


def _state(model: LoadedModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.module.state_dict().items()}


def _hooks(model: LoadedModel) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.module.modules()
    )


def _sample(model: LoadedModel, index: int = 0) -> torch.Tensor:
    return model.preprocess(load_image(sample_bytes(samples(model.name)[index])))


def test_groups_run_from_the_top_and_cover_every_parameter_once(fashion: LoadedModel) -> None:
    groups = sanity.layer_groups(fashion)
    assert [name for name, _ in groups] == ["fc4", "fc3", "conv2", "conv1"]
    paths = [p for _, ps in groups for p in ps]
    owners = {n.rsplit(".", 1)[0] for n, _ in fashion.module.named_parameters()}
    assert sorted(paths) == sorted(owners)  # every parameterised layer, none twice


def test_efficientnet_groups_follow_its_stages(lite: LoadedModel) -> None:
    names = [name for name, _ in sanity.layer_groups(lite)]
    assert names == ["fc", "head", *(f"stage{i}" for i in range(7, 0, -1)), "stem"]


def test_the_shared_model_is_left_exactly_as_it_was(fashion: LoadedModel) -> None:
    x = torch.rand(1, 1, 28, 28)
    before, hooks, logits = _state(fashion), _hooks(fashion), fashion.logits(x)
    result = sanity.cascade(fashion, x)
    after = fashion.module.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert _hooks(fashion) == hooks == 0
    assert torch.equal(fashion.logits(x), logits)
    assert all(p.grad is None for p in fashion.module.parameters())
    # ...while the copy really was randomised: the last stage's maps differ from the first
    assert not np.allclose(result.maps["gradient"][0], result.maps["gradient"][-1])


def test_stage_zero_is_the_original_maps_and_correlates_one(fashion: LoadedModel) -> None:
    x = torch.rand(1, 1, 28, 28)
    result = sanity.cascade(fashion, x, target=3, stages=2)
    assert result.stages == ("original", "fc4", "fc3")
    maps = attr.class_maps(fashion, x, 3, attr.default_cam_layer(fashion))
    np.testing.assert_allclose(result.maps["gradient"][0], maps["saliency"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        result.maps["guided backprop"][0], attr.magnitude(maps["guided backprop"]), rtol=1e-5, atol=1e-7
    )
    np.testing.assert_allclose(result.maps["Grad-CAM"][0], maps["Grad-CAM"], rtol=1e-5, atol=1e-7)
    for method in sanity.METHODS:
        assert result.maps[method].shape == (3, 28, 28)
        assert result.correlations[method][0] == pytest.approx(1.0)


def test_same_seed_same_result_and_the_global_random_state_is_untouched(fashion: LoadedModel) -> None:
    x = torch.rand(1, 1, 28, 28)
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = sanity.cascade(fashion, x, target=0)
    assert torch.equal(torch.rand(3), expected_next)
    b = sanity.cascade(fashion, x, target=0)
    for method in sanity.METHODS:
        np.testing.assert_array_equal(a.correlations[method], b.correlations[method])


def test_cancelling_stops_it_and_leaves_the_model_alone(fashion: LoadedModel) -> None:
    before = _state(fashion)

    def progress(done: int, total: int) -> None:
        if done == 2:
            raise Cancelled("stop")

    with pytest.raises(Cancelled):
        sanity.cascade(fashion, torch.rand(1, 1, 28, 28), progress=progress)
    assert all(torch.equal(before[k], v) for k, v in fashion.module.state_dict().items())


def test_a_constant_map_has_no_similarity_left() -> None:
    a = np.arange(16.0).reshape(4, 4)
    assert sanity.similarity(a, np.zeros((4, 4))) == 0.0
    assert sanity.similarity(a, a[::-1]) < 0
    assert sanity.similarity(a, a**2) == pytest.approx(1.0)  # a monotone change keeps the ranking


@pytest.mark.slow
@pytest.mark.parametrize("index", [0, 1])
def test_guided_backprop_survives_randomising_the_top_but_gradients_do_not(lite: LoadedModel, index: int) -> None:
    """Adebayo et al.'s qualitative result on the trained EfficientNet-Lite0 (two sample photos): once the
    classifier, the head and the last stage are random, guided backprop's map still ranks the pixels
    much as before, and clearly more so than the plain gradient's and Grad-CAM's."""
    result = sanity.cascade(lite, _sample(lite, index), stages=3)
    assert result.stages == ("original", "fc", "head", "stage7")
    after = {method: values[1:] for method, values in result.correlations.items()}
    guided, gradient, cam = after["guided backprop"], after["gradient"], after["Grad-CAM"]
    assert (guided > 0.8).all()
    assert (guided > gradient + 0.3).all()
    assert (guided > cam + 0.3).all()


@pytest.mark.slow
def test_the_order_holds_on_an_untrained_vgg16_too(vgg: LoadedModel) -> None:
    """On VGG-16 with random weights (no pretrained ones offline) the "original" is already random, yet
    guided backprop still barely changes when fc8..fc6 are re-initialised: it follows the image, not the
    weights. Plain gradients drop at once."""
    result = sanity.cascade(vgg, _sample(vgg), stages=3)
    assert result.stages == ("original", "fc8", "fc7", "fc6")
    guided, gradient = result.correlations["guided backprop"][1:], result.correlations["gradient"][1:]
    assert (guided > 0.9).all()
    assert (guided > gradient + 0.3).all()


def test_in_a_worker_process_it_gives_the_same_result_and_reports_progress(fashion: LoadedModel) -> None:
    """The page's path: a pickled copy of the network in a fresh process, progress forwarded, the same
    maps (one thread there, so sums may round differently: no exact equality) and the shared model untouched."""
    x = torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    before, calls = _state(fashion), []
    got = sanity.cascade_in_worker(fashion, x, target=3, stages=3, progress=lambda i, n: calls.append((i, n)))
    expected = sanity.cascade(fashion, x, target=3, stages=3)
    assert got.stages == expected.stages and calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    for method in sanity.METHODS:
        np.testing.assert_allclose(got.maps[method], expected.maps[method], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(got.correlations[method], expected.correlations[method], atol=1e-3)
    assert all(torch.equal(before[k], v) for k, v in fashion.module.state_dict().items())


def test_cancelling_the_worker_stops_it_and_errors_come_back(fashion: LoadedModel) -> None:
    def progress(done: int, total: int) -> None:
        if done == 2:
            raise Cancelled("stop")

    with pytest.raises(Cancelled):
        sanity.cascade_in_worker(fashion, torch.rand(1, 1, 28, 28), progress=progress)
    with pytest.raises(RuntimeError, match=r"expected input.*1 channels"):  # 3 channels for a 1-channel network
        sanity.cascade_in_worker(fashion, torch.rand(1, 3, 28, 28), target=0, stages=1)
