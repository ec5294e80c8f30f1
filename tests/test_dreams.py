"""Dreams: each optimisation does what it claims, measured independently of the optimiser.

Activations are re-measured on the returned picture through the ordinary model
path (PIL uint8 -> preprocess or normalise -> full network), not read from the
optimiser's own history; Gram matrices are checked against loops; the shared
modules are compared before and after every kind of call, cancelled ones too.
Sizes and steps are small where the property still holds, to keep the suite quick.
"""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from app.analyses import dreams
from app.analyses.attribution import layer_output
from app.base.errors import Cancelled
from app.networks.activations import activations
from app.networks.datasets import load_fashion_mnist
from app.networks.models import LoadedModel
from app.pictures import figures
from tests.conftest import photo


def _grey_pil(image: np.ndarray) -> Image.Image:
    return Image.fromarray((image[..., 0] * 255).round().astype(np.uint8), "L")


def _unit(model: LoadedModel, x: torch.Tensor, layer: str, channel: int) -> torch.Tensor:
    """Mean activation of one channel per image, from the full-network activations."""
    out = activations(model, x)[layer][:, channel]
    return out.flatten(1).mean(1) if out.dim() > 1 else out


def test_gram_equals_a_hand_computation_and_is_symmetric_psd() -> None:
    features = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    g = dreams.gram(features)
    assert g.shape == (2, 3, 3)
    for n in range(2):
        for i in range(3):
            for j in range(3):
                expected = sum(float(features[n, i, y, x] * features[n, j, y, x]) for y in range(4) for x in range(5))
                assert g[n, i, j].item() == pytest.approx(expected / 20, rel=1e-5, abs=1e-6)
    torch.testing.assert_close(g, g.transpose(1, 2))
    assert torch.linalg.eigvalsh(g).min() > -1e-5
    torch.testing.assert_close(dreams.gram(features[0]), g[0])  # [C, H, W] works too


@pytest.fixture(scope="module")
def test_set_relu2_2(fashion: LoadedModel) -> torch.Tensor:
    """Mean activation of every relu2_2 channel for every Fashion-MNIST test image, [10000, 64]."""
    images, _ = load_fashion_mnist("test")
    x = (images[:, None].float() / 255 - fashion.mean[0]) / fashion.std[0]
    return torch.cat([layer_output(fashion, x[i : i + 1000], "relu2_2").mean((2, 3)) for i in range(0, len(x), 1000)])


@pytest.mark.slow
def test_fashion_feature_visualisation_beats_noise_and_every_test_image(
    fashion: LoadedModel, test_set_relu2_2: torch.Tensor
) -> None:
    layer, channel = "relu2_2", 3
    # channel 3 is off everywhere in the starting picture: only the redirected ReLU gradient wakes it up
    dream = dreams.visualise(fashion, layer, channel, steps=128, seed=1)
    assert dream.image.shape == (28, 28, 1) and dream.image.dtype == np.float32
    assert dream.image.min() >= 0 and dream.image.max() <= 1
    short = [dreams.visualise(fashion, layer, channel, steps=8, seed=s).image for s in (1, 1, 2)]
    np.testing.assert_array_equal(short[0], short[1])
    assert not np.array_equal(short[0], short[2])

    reached = _unit(fashion, fashion.preprocess(_grey_pil(dream.image)), layer, channel).item()
    start = dreams.FourierImage(1, 28, torch.Generator().manual_seed(1)).pixels().detach()
    noise = _unit(fashion, dreams.to_input(fashion, start[0].permute(1, 2, 0).numpy()), layer, channel).item()
    images, _ = load_fashion_mnist("test")
    x = (images[:, None].float() / 255 - fashion.mean[0]) / fashion.std[0]
    data = torch.cat(
        [layer_output(fashion, x[i : i + 2000], layer)[:, channel].mean((1, 2)) for i in range(0, 10000, 2000)]
    )
    assert reached >= 5 * max(noise, 1e-3)
    assert reached > data[:100].mean().item()
    assert reached > data.max().item()  # beats the unit's best image of the whole test set
    history = dream.history["objective"]
    tenth = len(history) // 10
    assert np.mean(history[-tenth:]) > np.mean(history[:tenth])


@pytest.mark.slow
def test_vgg_feature_visualisation_beats_noise_and_photos(vgg: LoadedModel) -> None:
    layer, channel = "relu3_1", 5
    dream = dreams.visualise(vgg, layer, channel, size=64, steps=48)
    assert dream.image.shape == (64, 64, 3)
    reached = _unit(vgg, dreams.to_input(vgg, dream.image), layer, channel).item()
    start = dreams.FourierImage(3, 64, torch.Generator().manual_seed(0)).pixels().detach()
    noise = _unit(vgg, dreams.to_input(vgg, start[0].permute(1, 2, 0).numpy()), layer, channel).item()
    photos = torch.cat([vgg.to_tensor(photo((64, 64), seed=s)) for s in range(8)])
    assert reached >= 5 * max(noise, 1e-6)
    assert reached > _unit(vgg, photos, layer, channel).mean().item()


@pytest.mark.slow
def test_class_models_of_the_trained_fashion_cnn_are_classified_as_their_class(fashion: LoadedModel) -> None:
    for target, label in enumerate(fashion.labels):
        dream = dreams.class_model(fashion, target)
        probs = torch.softmax(fashion.logits(fashion.preprocess(_grey_pil(dream.image)))[0], 0)
        assert probs[target] > 0.9, (label, float(probs[target]))


def _norm(model: LoadedModel, x: torch.Tensor, layer: str) -> float:
    return float(activations(model, x)[layer].norm())


def test_deep_dream_raises_the_layer_norm_on_the_users_image(fashion: LoadedModel) -> None:
    image = Image.fromarray(np.asarray(photo((28, 28), seed=2).convert("L"))).convert("RGB")
    dream = dreams.deep_dream(fashion, image, "relu2_1", octaves=2, steps=8)
    assert dream.image.shape == (28, 28, 1) and len(dream.history["objective"]) == 16
    before = _norm(fashion, fashion.preprocess(image), "relu2_1")
    after = _norm(fashion, fashion.preprocess(_grey_pil(dream.image)), "relu2_1")
    assert after > 1.2 * before


@pytest.mark.slow
def test_deep_dream_on_vgg(vgg: LoadedModel) -> None:
    image = photo((224, 224), seed=3)
    dream = dreams.deep_dream(vgg, image, "relu3_1", octaves=2, steps=3)
    assert dream.image.shape == (224, 224, 3)
    before = _norm(vgg, vgg.to_tensor(image), "relu3_1")
    assert _norm(vgg, dreams.to_input(vgg, dream.image), "relu3_1") > before


def test_default_style_layers_are_gatys_choice(vgg: LoadedModel, fashion: LoadedModel) -> None:
    layers = dreams.default_style_layers(vgg)
    assert layers.content == "relu4_2"
    assert layers.style == ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    assert dreams.style_unavailable(vgg) is None
    assert "grey" in dreams.style_unavailable(fashion)
    with pytest.raises(ValueError, match="grey"):
        dreams.style_transfer(fashion, photo(), photo(seed=1))


@pytest.mark.slow
def test_style_transfer_lowers_the_style_loss_tenfold_and_weight_zero_keeps_the_content(vgg: LoadedModel) -> None:
    content, style = photo((80, 64), seed=4), dreams.bundled_styles()["udnie"][1]()
    dream = dreams.style_transfer(vgg, content, style, size=64)
    assert dream.image.shape == (64, 64, 3) and dream.image.min() >= 0 and dream.image.max() <= 1
    style_loss = dream.history["style"]
    assert len(style_loss) == 80 and style_loss[-1] < style_loss[0] / 10
    original = np.asarray(dreams._fit(content, 64, crop=True), dtype=np.float32) / 255
    kept = dreams.style_transfer(vgg, content, style, size=64, steps=20, style_weight=0)
    assert np.abs(kept.image - original).mean() < 0.05
    assert np.abs(dream.image - original).mean() > 2 * np.abs(kept.image - original).mean()


@pytest.mark.slow
def test_style_transfer_is_the_same_for_every_seed(vgg: LoadedModel) -> None:
    content, style = photo((80, 64), seed=5), dreams.wave_pattern(64)
    runs = [dreams.style_transfer(vgg, content, style, size=32, steps=4, seed=seed) for seed in (0, 0, 7)]
    for run in runs[1:]:
        np.testing.assert_array_equal(run.image, runs[0].image)
        assert run.history == runs[0].history
    assert not np.array_equal(runs[0].image, np.asarray(dreams._fit(content, 32, crop=True), np.float32) / 255)


def _state(model: LoadedModel) -> dict:
    module = model.module
    hooks = sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) + len(m._backward_pre_hooks)
        for m in module.modules()
    )
    return {
        "params": {k: v.detach().clone() for k, v in module.state_dict().items()},
        "requires_grad": [p.requires_grad for p in module.parameters()],
        "grads": [p.grad is None for p in module.parameters()],
        "inplace": [m.inplace for m in module.modules() if isinstance(m, nn.ReLU)],
        "training": [m.training for m in module.modules()],
        "hooks": hooks,
    }


def _assert_same(before: dict, after: dict) -> None:
    assert after["params"].keys() == before["params"].keys()
    for key, value in before["params"].items():
        assert torch.equal(after["params"][key], value), key
    for field in ("requires_grad", "grads", "inplace", "training"):
        assert after[field] == before[field], field
    assert after["hooks"] == 0


def _cancel_at(step: int):
    def progress(done: int, total: int) -> None:
        if done >= step:
            raise Cancelled("stop")

    return progress


def test_no_state_left_on_the_shared_modules_even_when_cancelled(fashion: LoadedModel, vgg: LoadedModel) -> None:
    before = {"fashion": _state(fashion), "vgg": _state(vgg)}
    grey = photo((28, 28)).convert("L").convert("RGB")
    dreams.visualise(fashion, "relu1_2", 2, steps=4)
    dreams.class_model(fashion, 3, steps=4)
    dreams.deep_dream(fashion, grey, "relu1_1", octaves=2, steps=2)
    dreams.style_transfer(vgg, photo((40, 40)), photo((40, 40), seed=1), size=32, steps=2)
    for call in (
        lambda p: dreams.visualise(fashion, "fc4", 1, steps=10, progress=p),
        lambda p: dreams.deep_dream(fashion, grey, "relu2_1", octaves=2, steps=3, progress=p),
        lambda p: dreams.style_transfer(vgg, photo((40, 40)), photo((40, 40), seed=1), size=32, steps=5, progress=p),
    ):
        with pytest.raises(Cancelled):
            call(_cancel_at(2))
    _assert_same(before["fashion"], _state(fashion))
    _assert_same(before["vgg"], _state(vgg))


def test_four_threads_give_the_sequential_results(fashion: LoadedModel) -> None:
    grey = photo((28, 28), seed=5).convert("L").convert("RGB")
    jobs = [
        lambda: dreams.visualise(fashion, "relu2_1", 4, steps=12, seed=1).image,
        lambda: dreams.visualise(fashion, "relu1_2", 9, steps=12, seed=2).image,
        lambda: dreams.class_model(fashion, 7, steps=12, seed=3).image,
        lambda: dreams.deep_dream(fashion, grey, "relu2_2", octaves=2, steps=6, seed=4).image,
    ]
    sequential = [job() for job in jobs]
    barrier = threading.Barrier(4)

    def together(job):
        barrier.wait()
        return job()

    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(together, jobs))
    for a, b in zip(sequential, threaded, strict=True):
        np.testing.assert_array_equal(a, b)


def test_previews_progress_and_png(fashion: LoadedModel) -> None:
    seen: list[dreams.Dream] = []
    calls: list[tuple[int, int]] = []
    dream = dreams.visualise(
        fashion, "relu1_1", 0, steps=32, preview=seen.append, progress=lambda d, t: calls.append((d, t))
    )
    assert calls == [(i, 32) for i in range(1, 33)]
    assert [d.steps for d in seen] == [2 * i for i in range(1, 17)]
    np.testing.assert_array_equal(seen[-1].image, dream.image)
    assert len(seen[0].history["objective"]) == 2
    png = Image.open(io.BytesIO(dream.png()))
    assert png.mode == "L" and png.size == (28, 28)
    np.testing.assert_array_equal(np.asarray(png), (dream.image[..., 0] * 255).round().astype(np.uint8))


def test_bad_requests_are_refused_clearly(fashion: LoadedModel) -> None:
    with pytest.raises(ValueError, match="channels"):
        dreams.visualise(fashion, "relu1_1", 32)
    with pytest.raises(KeyError):
        dreams.visualise(fashion, "nope", 0)
    with pytest.raises(ValueError, match="28 px"):
        dreams.visualise(fashion, "fc3", 0, size=40)
    with pytest.raises(ValueError, match="class"):
        dreams.class_model(fashion, 10)
    with pytest.raises(ValueError, match="feature maps"):
        dreams.deep_dream(fashion, photo(), "fc3")


def test_pictures_are_enlarged_by_whole_pixels_and_greys_become_rgb() -> None:
    grey = np.array([[[0.0], [1.0]], [[0.5], [0.25]]], dtype=np.float32)  # (2, 2, 1)
    shown = figures.picture(grey, min_side=5)
    assert shown.shape == (6, 6, 3) and shown.dtype == np.uint8  # factor ceil(5 / 2) = 3
    np.testing.assert_array_equal(shown[:3, :3], 0)
    np.testing.assert_array_equal(shown[:3, 3:], 255)
    np.testing.assert_array_equal(shown[3:, :3], 128)
    big = np.full((300, 250, 3), 0.5, dtype=np.float32)
    assert figures.picture(big, 224).shape == (300, 250, 3)  # already large enough: unchanged


def test_bundled_styles_load_as_rgb() -> None:
    for caption, load in dreams.bundled_styles().values():
        image = load()
        assert image.mode == "RGB" and min(image.size) >= 128 and caption


# ---- the redirected gradient of ReLU and ReLU6 (Lucid's redirected_relu_grad / redirected_relu6_grad) ----


def _clamp_grads(x: list[list[float]], grad: list[list[float]], high: float | None) -> tuple[torch.Tensor, ...]:
    leaf = torch.tensor(x, requires_grad=True)
    out = dreams.redirected_relu(leaf) if high is None else dreams.redirected_clamp(leaf, 0.0, high)
    (g,) = torch.autograd.grad(out, [leaf], torch.tensor(grad))
    return out.detach(), g


def test_redirected_relu6_backward_by_hand() -> None:
    # sample 0 is silent (nothing in 0..6): the redirected gradient lets through what pushes x back into
    # the linear range: up from below 0 (gradient < 0, since the optimiser descends), down from above 6.
    # Sample 1 has a unit in range, so it gets ReLU6's ordinary gradient (zero outside 0..6).
    x = [[-1.0, 7.0, -2.0, 8.0], [3.0, -1.0, 7.0, 2.0]]
    grad = [[-1.0, 1.0, 1.0, -1.0], [2.0, -1.0, 1.0, -3.0]]
    out, g = _clamp_grads(x, grad, 6.0)
    torch.testing.assert_close(out, torch.tensor([[0.0, 6.0, 0.0, 6.0], [3.0, 0.0, 6.0, 2.0]]))
    torch.testing.assert_close(g, torch.tensor([[-1.0, 1.0, 0.0, 0.0], [2.0, 0.0, 0.0, -3.0]]))
    # the same samples through plain ReLU: 7 and 8 are in range now, so sample 0 is not silent
    out, g = _clamp_grads(x, grad, None)
    torch.testing.assert_close(out, torch.tensor(x).clamp(min=0))
    torch.testing.assert_close(g, torch.tensor([[0.0, 1.0, 0.0, -1.0], [2.0, 0.0, 1.0, -3.0]]))
    _, g = _clamp_grads([[-1.0, -2.0]], [[-1.0, 1.0]], None)  # silent ReLU: only the upward push
    torch.testing.assert_close(g, torch.tensor([[-1.0, 0.0]]))


def test_relu6_and_hardtanh_in_any_form_are_redirected() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.relu6, self.relu = nn.ReLU6(), nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.relu(self.relu6(x))
            return torch.nn.functional.hardtanh(torch.nn.functional.relu6(x), 0.0, max_val=6.0) + x.sigmoid()

    traced = torch.fx.symbolic_trace(Net())
    owner = type("Owner", (), {"module": traced})()
    bounds = [dreams._clamp_bounds(owner, node) for node in traced.graph.nodes]
    assert [b for b in bounds if b is not None] == [(0.0, 6.0), (0.0, None), (0.0, 6.0), (0.0, 6.0)]


@pytest.mark.slow
def test_a_silent_efficientnet_lite_unit_wakes_up(lite: LoadedModel, monkeypatch) -> None:
    # channel 2 of this ReLU6 is 0 everywhere on the starting noise: with ReLU6's ordinary gradient it
    # never moves (checked below), with the redirected one it fires within 16 steps
    layer, channel = "stage4.block2.depthwise_relu", 2
    start = dreams.FourierImage(3, 64, torch.Generator().manual_seed(0)).pixels().detach()
    noise = _unit(lite, dreams.to_input(lite, start[0].permute(1, 2, 0).numpy()), layer, channel).item()
    assert noise == 0.0
    dream = dreams.visualise(lite, layer, channel, size=64, steps=16)
    reached = _unit(lite, dreams.to_input(lite, dream.image), layer, channel).item()
    assert reached > 0.5  # the ReLU6 output, 0..6
    monkeypatch.setattr(
        dreams._RedirectedClamp,
        "backward",
        staticmethod(lambda ctx, grad: (grad * (ctx.saved_tensors[0] > 0) * (ctx.saved_tensors[0] < 6), None, None)),
    )
    plain = dreams.visualise(lite, layer, channel, size=64, steps=16)
    assert max(plain.history["objective"]) == 0.0
