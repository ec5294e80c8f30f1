"""Attribution maps against independent oracles: autograd, captum, hand computation."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from captum.attr import GuidedBackprop, GuidedGradCam, LayerAttribution, LayerGradCam
from PIL import Image
from torch import nn

from app.analyses import attribution as attr
from app.base.errors import DatasetMissingError
from app.networks.activations import activations
from app.networks.datasets import load_fashion_mnist
from app.networks.layers import layer_table
from app.networks.loaded import LoadedModel
from app.serving import sharing
from tests.conftest import photo

# captum warns that it sets requires_grad and hooks ReLUs: expected for an oracle
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:captum.*")


def fashion_inputs(model: LoadedModel, n: int) -> list[torch.Tensor]:
    """The first n Fashion-MNIST test images (real clothes: the sanity check needs them)."""
    try:
        images, _ = load_fashion_mnist("test")
    except DatasetMissingError as exc:
        pytest.skip(str(exc))
    return [model.to_tensor(Image.fromarray(images[i].numpy())) for i in range(n)]


def vgg_input(model: LoadedModel) -> torch.Tensor:
    """112 px, not 224: VGG-16's adaptive pooling accepts it, and every comparison with an
    oracle holds at any size, at a quarter of the cost of a 224 px backward pass."""
    return model.to_tensor(photo((112, 112), seed=1))


def predicted(model: LoadedModel, x: torch.Tensor) -> int:
    return int(model.logits(x, "exact")[0].argmax())


def assert_close(actual: np.ndarray, expected: torch.Tensor | np.ndarray, rel: float = 1e-5) -> None:
    expected = np.asarray(expected.detach() if isinstance(expected, torch.Tensor) else expected, dtype=np.float32)
    assert actual.shape == expected.shape
    scale = float(np.abs(expected).max())
    assert scale > 0, "oracle map is all zero: the comparison would prove nothing"
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rel * scale)


def module_input_grad(module: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    leaf = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(module(leaf)[0, target], [leaf])
    return grad


# ---- oracles on both real models ------------------------------------------------

MODELS = ["fashion", pytest.param("vgg", marks=pytest.mark.slow)]


def model_and_input(request: pytest.FixtureRequest, name: str) -> tuple[LoadedModel, torch.Tensor]:
    model = request.getfixturevalue(name)
    x = fashion_inputs(model, 1)[0] if name == "fashion" else vgg_input(model)
    return model, x


@pytest.mark.parametrize("name", MODELS)
def test_saliency_is_abs_gradient_of_the_logit(request: pytest.FixtureRequest, name: str) -> None:
    model, x = model_and_input(request, name)
    target = 3
    expected = module_input_grad(model.module, x, target)[0].abs().amax(0)
    assert_close(attr.saliency(model, x, target), expected)


@pytest.mark.parametrize("name", MODELS)
def test_guided_backprop_for_a_class_matches_captum(request: pytest.FixtureRequest, name: str) -> None:
    model, x = model_and_input(request, name)
    target = predicted(model, x)
    expected = GuidedBackprop(model.module).attribute(x.clone(), target=target)[0]
    assert_close(attr.guided_backprop(model, x, target=target), expected)


@pytest.mark.parametrize("name", MODELS)
def test_grad_cam_matches_captum(request: pytest.FixtureRequest, name: str) -> None:
    model, x = model_and_input(request, name)
    target = predicted(model, x)
    layer = attr.default_cam_layer(model)
    assert layer == {"fashion": "relu2_2", "vgg": "relu5_3"}[name]
    cam = LayerGradCam(model.module, model.module.get_submodule(model.layer(layer).path))
    coarse = cam.attribute(x.clone(), target=target, relu_attributions=True)
    expected = LayerAttribution.interpolate(coarse, tuple(x.shape[-2:]), "bilinear")[0, 0]
    assert_close(attr.grad_cam(model, x, target), expected)


class ChannelSum(nn.Module):
    """The network up to a layer, returning one channel's summed map as a [N, 1] score."""

    def __init__(self, body: nn.Sequential, channel: int) -> None:
        super().__init__()
        self.body, self.channel = body, channel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)[:, self.channel].sum(dim=(1, 2))[:, None]


@pytest.mark.parametrize(
    ("name", "layer"), [("fashion", "conv2_1"), pytest.param("vgg", "conv4_1", marks=pytest.mark.slow)]
)
def test_guided_backprop_for_a_channel_matches_captum_on_a_truncated_network(
    request: pytest.FixtureRequest, name: str, layer: str
) -> None:
    model, x = model_and_input(request, name)
    channel = attr.most_active_channel(model, x, layer)
    index = int(model.layer(layer).path.split(".")[1])
    truncated = ChannelSum(model.module.features[: index + 1], channel)
    expected = GuidedBackprop(truncated).attribute(x.clone(), target=0)[0]
    assert_close(attr.guided_backprop(model, x, layer=layer, channel=channel), expected)


def test_most_active_channel_is_argmax_of_mean_activation(fashion: LoadedModel) -> None:
    x = fashion_inputs(fashion, 1)[0]
    acts = activations(fashion, x)["relu1_2"][0]
    assert attr.most_active_channel(fashion, x, "relu1_2") == int(acts.mean((1, 2)).argmax())
    np.testing.assert_allclose(attr.channel_strengths(fashion, x, "relu1_2"), acts.mean((1, 2)), rtol=1e-5)


def test_grad_cam_at_another_layer_and_guided_grad_cam_match_captum(fashion: LoadedModel) -> None:
    x = fashion_inputs(fashion, 1)[0]
    target = predicted(fashion, x)
    layer_module = fashion.module.get_submodule(fashion.layer("pool2").path)
    coarse = LayerGradCam(fashion.module, layer_module).attribute(x.clone(), target=target, relu_attributions=True)
    expected = LayerAttribution.interpolate(coarse, (28, 28), "bilinear")[0, 0]
    assert_close(attr.grad_cam(fashion, x, target, "pool2"), expected)

    last = fashion.module.get_submodule(fashion.layer(attr.default_cam_layer(fashion)).path)
    guided_cam = GuidedGradCam(fashion.module, last).attribute(x.clone(), target=target, interpolate_mode="bilinear")
    assert_close(attr.guided_grad_cam(fashion, x, target), guided_cam[0], rel=1e-4)


def test_class_maps_equal_the_single_method_functions(fashion: LoadedModel) -> None:
    x = fashion_inputs(fashion, 1)[0]
    target = predicted(fashion, x)
    maps = attr.class_maps(fashion, x, target, "relu2_1")
    np.testing.assert_allclose(maps["saliency"], attr.saliency(fashion, x, target), rtol=1e-6)
    np.testing.assert_allclose(maps["guided backprop"], attr.guided_backprop(fashion, x, target), rtol=1e-6)
    np.testing.assert_allclose(maps["Grad-CAM"], attr.grad_cam(fashion, x, target, "relu2_1"), rtol=1e-6)
    np.testing.assert_allclose(maps["guided Grad-CAM"], attr.guided_grad_cam(fashion, x, target, "relu2_1"), rtol=1e-6)


def test_smoothgrad_is_mean_abs_gradient_over_seeded_noise(fashion: LoadedModel) -> None:
    x = fashion_inputs(fashion, 1)[0]
    n, noise, target = 6, 0.2, 2
    calls: list[tuple[int, int]] = []
    got = attr.saliency(
        fashion, x, target, smoothgrad_samples=n, noise=noise, progress=lambda i, t: calls.append((i, t))
    )

    sigma = noise * float(x.max() - x.min())
    noises = torch.randn((n, *x.shape[1:]), generator=torch.Generator().manual_seed(0)) * sigma
    grads = [module_input_grad(fashion.module, x + noises[i], target)[0].abs() for i in range(n)]
    assert_close(got, torch.stack(grads).mean(0).amax(0))
    assert calls == [(4, 6), (6, 6)]
    np.testing.assert_array_equal(got, attr.saliency(fashion, x, target, smoothgrad_samples=n, noise=noise))
    assert attr.rank_correlation(got, attr.saliency(fashion, x, target)) < 0.99


# ---- guided ReLU rule by hand ---------------------------------------------------


def tiny_model() -> LoadedModel:
    """conv(1->2, 2x2) - ReLU - conv(2->2, 1x1) - ReLU - flatten - linear(8->2) on a 3x3 image."""
    net = nn.Sequential(
        nn.Conv2d(1, 2, 2, bias=False),
        nn.ReLU(),
        nn.Conv2d(2, 2, 1, bias=False),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8, 2, bias=False),
    )
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[[[1.0, -1.0], [0.5, 2.0]]], [[[-1.0, 0.5], [1.0, -0.5]]]]))
        net[2].weight.copy_(torch.tensor([[[[1.0]], [[-2.0]]], [[[-1.0]], [[1.5]]]]))
        net[5].weight.copy_(torch.tensor([[1.0, -1.0, 2.0, -0.5, -1.0, 1.0, 0.5, -2.0], [0.0] * 8]))
    model = LoadedModel(
        "tiny", "tiny", net.eval(), ("a", "b"), 3, (0.0,), (1.0,), "hand-set", True, torch.device("cpu")
    )
    model.layers = layer_table(net, (1, 3, 3))
    return model


TINY_X = np.array([[1.0, -2.0, 0.5], [0.0, 1.5, -1.0], [2.0, -0.5, 1.0]])


def hand_forward(w1: np.ndarray, w2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h1 = np.zeros((2, 2, 2))
    for k in range(2):
        for i in range(2):
            for j in range(2):
                h1[k, i, j] = sum(w1[k, 0, a, b] * TINY_X[i + a, j + b] for a in range(2) for b in range(2))
    r1 = np.maximum(h1, 0)
    h2 = np.einsum("kc,cij->kij", w2[:, :, 0, 0], r1)
    return h1, h2


def hand_backward_to_input(g_r1: np.ndarray, h1: np.ndarray, w1: np.ndarray) -> np.ndarray:
    g_h1 = np.where((h1 > 0) & (g_r1 > 0), g_r1, 0.0)  # guided ReLU 1
    g_x = np.zeros((3, 3))
    for k in range(2):
        for i in range(2):
            for j in range(2):
                for a in range(2):
                    for b in range(2):
                        g_x[i + a, j + b] += w1[k, 0, a, b] * g_h1[k, i, j]
    return g_x


def test_guided_backprop_matches_hand_computation_on_a_tiny_network() -> None:
    model = tiny_model()
    w1, w2 = model.module[0].weight.detach().numpy(), model.module[2].weight.detach().numpy()
    wfc = model.module[5].weight.detach().numpy()
    x = torch.tensor(TINY_X, dtype=torch.float32)[None, None]
    h1, h2 = hand_forward(w1, w2)

    # class 0: d logit / d r2 = wfc[0]; guided ReLU 2; 1x1 conv back; guided ReLU 1; conv back.
    g_r2 = wfc[0].reshape(2, 2, 2)
    g_h2 = np.where((h2 > 0) & (g_r2 > 0), g_r2, 0.0)
    g_r1 = np.einsum("kc,kij->cij", w2[:, :, 0, 0], g_h2)
    expected_class = hand_backward_to_input(g_r1, h1, w1)
    got_class = attr.guided_backprop(model, x, target=0)[0]
    np.testing.assert_allclose(got_class, expected_class, atol=1e-6)

    # channel 1 of the second conv (before its ReLU): d sum / d h2 = 1 on that channel.
    g_h2 = np.zeros((2, 2, 2))
    g_h2[1] = 1.0
    g_r1 = np.einsum("kc,kij->cij", w2[:, :, 0, 0], g_h2)
    expected_channel = hand_backward_to_input(g_r1, h1, w1)
    got_channel = attr.guided_backprop(model, x, layer="conv1_2", channel=1)[0]
    np.testing.assert_allclose(got_channel, expected_channel, atol=1e-6)

    # The case is not vacuous: both masks bite, so guided differs from the plain gradient.
    plain = module_input_grad(model.module, x, 0)[0, 0].numpy()
    assert (h1 <= 0).any() and (g_r1 < 0).any()
    assert not np.allclose(plain, got_class)
    assert np.abs(expected_class).max() > 0 and np.abs(expected_channel).max() > 0


# ---- Adebayo et al. sanity check --------------------------------------------------


def test_maps_change_when_weights_are_randomised(fashion: LoadedModel, fashion_untrained: LoadedModel) -> None:
    """Maps that survive re-initialising the weights would explain the image, not the model."""
    xs = fashion_inputs(fashion, 6)
    sal, cam = [], []
    for x in xs:
        target = predicted(fashion, x)
        sal.append(
            attr.rank_correlation(attr.saliency(fashion, x, target), attr.saliency(fashion_untrained, x, target))
        )
        trained_cam = attr.grad_cam(fashion, x, target)
        random_cam = attr.grad_cam(fashion_untrained, x, target)
        assert trained_cam.max() > 0, "the trained model's map must show evidence, or the check proves nothing"
        # an all-zero map (no positive evidence) has no ranking: count it as uncorrelated
        cam.append(0.0 if random_cam.max() == 0 else attr.rank_correlation(trained_cam, random_cam))
    print(f"saliency rank correlation trained vs random: {np.round(sal, 3)} mean {np.mean(sal):.3f}")
    print(f"Grad-CAM rank correlation trained vs random: {np.round(cam, 3)} mean {np.mean(cam):.3f}")
    assert np.mean(sal) < 0.5
    assert np.mean(cam) < 0.5


# ---- no state on the shared module, concurrency ------------------------------------


def assert_module_untouched(model: LoadedModel) -> None:
    for path, module in model.module.named_modules():
        for hooks in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
            assert not getattr(module, hooks), f"{path or 'root'} still has {hooks}"
        if isinstance(module, nn.ReLU):
            assert module.inplace is False
    mm = nn.modules.module
    for hooks in (
        mm._global_forward_hooks,
        mm._global_forward_pre_hooks,
        mm._global_backward_hooks,
        mm._global_backward_pre_hooks,
    ):
        assert not hooks
    assert all(p.grad is None for p in model.module.parameters())


def run_job(model: LoadedModel, x: torch.Tensor, job: str) -> np.ndarray:
    target = predicted(model, x)
    if job == "saliency":
        return attr.saliency(model, x, target)
    if job == "smoothgrad":
        return attr.saliency(model, x, target, smoothgrad_samples=3)
    if job == "guided":
        return attr.guided_backprop(model, x, target=target)
    if job == "channel":
        return attr.guided_backprop(model, x, layer="relu2_1", channel=attr.most_active_channel(model, x, "relu2_1"))
    if job == "gradcam":
        return attr.grad_cam(model, x, target, "conv1_2")
    if job == "captum hooks":  # hooks on the shared ReLUs, as app.serving.sharing allows: alone, under the lock
        with model.lock, sharing.exclusive():
            return GuidedBackprop(model.module).attribute(x.clone(), target=target)[0].detach().numpy()
    if job == "compare":
        return np.concatenate([m.ravel() for m in attr.class_maps(model, x, target).values()])
    return attr.guided_grad_cam(model, x, target)


def run_threads(jobs: list[tuple[LoadedModel, torch.Tensor, str]]) -> list[np.ndarray | BaseException]:
    results: list[np.ndarray | BaseException] = [RuntimeError("not run")] * len(jobs)
    barrier = threading.Barrier(len(jobs))

    def work(i: int) -> None:
        barrier.wait()
        try:
            results[i] = run_job(*jobs[i])
        except BaseException as exc:  # reported by the assertion below
            results[i] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_eight_threads_give_sequential_results_and_leave_no_state(fashion: LoadedModel) -> None:
    """Mixed methods and images at once, with one thread hooking the shared ReLUs the captum way: our
    passes share those layer objects, so they would come out guided if they ran while the hooks were on."""
    xs = fashion_inputs(fashion, 4)
    names = ["saliency", "smoothgrad", "guided", "channel", "gradcam", "guidedgradcam", "compare", "captum hooks"]
    jobs = [(fashion, xs[i % 4], name) for i, name in enumerate(names)]
    relu_flags = [m.inplace for m in fashion.module.modules() if isinstance(m, nn.ReLU)]
    state = {k: v.clone() for k, v in fashion.module.state_dict().items()}
    sequential = [run_job(*job) for job in jobs]
    concurrent = run_threads(jobs)
    for name, seq, conc in zip(names, sequential, concurrent, strict=True):
        assert not isinstance(conc, BaseException), f"{name} failed in a thread: {conc!r}"
        np.testing.assert_allclose(conc, seq, rtol=1e-6, atol=1e-7 * np.abs(seq).max(), err_msg=name)
    assert_module_untouched(fashion)
    assert [m.inplace for m in fashion.module.modules() if isinstance(m, nn.ReLU)] == relu_flags
    for k, v in fashion.module.state_dict().items():
        assert torch.equal(v, state[k]), k


@pytest.mark.slow
def test_vgg_concurrently_with_fashion(vgg: LoadedModel, fashion: LoadedModel) -> None:
    x = vgg_input(vgg)
    fx = fashion_inputs(fashion, 1)[0]
    jobs = [(vgg, x, "guided"), (fashion, fx, "saliency"), (fashion, fx, "channel")]
    sequential = [run_job(*job) for job in jobs]
    for job, seq, conc in zip(jobs, sequential, run_threads(jobs), strict=True):
        assert not isinstance(conc, BaseException), f"{job[2]} failed in a thread: {conc!r}"
        np.testing.assert_allclose(conc, seq, rtol=1e-6, atol=1e-7 * np.abs(seq).max())
    assert_module_untouched(vgg)
    assert_module_untouched(fashion)


# ---- argument checks and display helpers -------------------------------------------


def test_maps_are_the_same_inside_inference_mode_or_autocast(fashion: LoadedModel) -> None:
    """Callers (notebooks, other analyses) may sit in inference_mode or bf16 autocast: maps stay exact fp32."""
    x = fashion_inputs(fashion, 1)[0]
    expected = attr.class_maps(fashion, x, 1)
    with torch.inference_mode():
        in_inference = attr.class_maps(fashion, x.clone(), 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        in_autocast = attr.class_maps(fashion, x, 1)
    for name in expected:
        np.testing.assert_array_equal(in_inference[name], expected[name], err_msg=name)
        np.testing.assert_array_equal(in_autocast[name], expected[name], err_msg=name)


def test_bad_arguments_are_refused(fashion: LoadedModel) -> None:
    x = torch.zeros(1, 1, 28, 28)
    with pytest.raises(ValueError, match="not both"):
        attr.guided_backprop(fashion, x, target=1, layer="conv1_1", channel=0)
    with pytest.raises(ValueError, match="either target"):
        attr.guided_backprop(fashion, x, layer="conv1_1")
    with pytest.raises(ValueError, match="channels"):
        attr.guided_backprop(fashion, x, layer="conv1_1", channel=10_000)
    with pytest.raises(ValueError, match="spatial"):
        attr.grad_cam(fashion, x, 0, "fc3")
    with pytest.raises(ValueError, match="class index"):
        attr.saliency(fashion, x, 10)
    assert attr.last_conv(fashion) == "conv2_2" and attr.default_cam_layer(fashion) == "relu2_2"
    assert "fc3" not in attr.spatial_layers(fashion) and "conv1_1" in attr.spatial_layers(fashion)


def test_display_helpers() -> None:
    values = np.array([[0.0, 1.0], [2.0, 4.0]])
    np.testing.assert_allclose(attr.unit_range(values), [[0, 0.25], [0.5, 1]])
    np.testing.assert_array_equal(attr.unit_range(np.ones((2, 2))), np.zeros((2, 2)))
    grad = np.zeros((1, 2, 2))
    grad[0, 0, 0], grad[0, 1, 1] = 2.0, -1.0
    img = attr.gradient_image(grad)
    assert img.shape == (2, 2, 3)
    np.testing.assert_allclose(img[..., 0], [[1.0, 0.5], [0.5, 0.25]])
    # |grad| is [2, 0, 0, 1]: its 50th percentile is 0.5, so 2 clips to white and -1 to black
    np.testing.assert_allclose(attr.gradient_image(grad, percentile=50)[..., 1], [[1.0, 0.5], [0.5, 0.0]])
    np.testing.assert_allclose(attr.magnitude(np.stack([grad[0], -3 * grad[0]])), [[6, 0], [0, 3]])
    assert attr.rank_correlation(values, values**2) == pytest.approx(1.0)
