"""Model registry: weight loading paths, pre-processing and the shipped Fashion CNN."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
import torch
import torchvision

from app.base.errors import WeightsUnavailableError
from app.networks.datasets import load_fashion_mnist
from app.networks.models import (
    CONFIG_ENV,
    FASHION_WEIGHTS,
    IMAGENET_MEAN,
    MODEL_NAMES,
    VGG_ENV,
    ModelConfigError,
    configured_models,
    get_model,
    get_model_or_untrained,
    model_names,
    torchvision_model,
)
from models.train_fashion import evaluate
from tests.conftest import photo


def test_vgg_preprocess_matches_torchvision_transforms(vgg):
    img = photo((400, 300))
    expected = torchvision.models.VGG16_Weights.IMAGENET1K_V1.transforms()(img).unsqueeze(0)
    torch.testing.assert_close(vgg.preprocess(img), expected, atol=1e-5, rtol=0)


def test_fashion_preprocess_is_grey_28_normalised(fashion):
    x = fashion.preprocess(photo((56, 56)))
    assert x.shape == (1, 1, 28, 28)
    grey = fashion.preprocess_steps(photo((56, 56)))[-1].image
    assert grey.mode == "L" and grey.size == (28, 28)
    assert torch.allclose(
        fashion.denormalise(x)[0] * 255, torch.from_numpy(np.asarray(grey, dtype=np.float32)), atol=1e-3
    )


def test_vgg_state_dict_file_round_trip(tmp_path, vgg):
    path = tmp_path / "vgg16.pth"
    torch.save(vgg.module.state_dict(), path)
    loaded = get_model("vgg16", weights=path)
    assert loaded.trained and "vgg16.pth" in loaded.weights
    x = vgg.preprocess(photo())
    torch.testing.assert_close(loaded.logits(x, "fp32"), vgg.logits(x, "fp32"))


def test_vgg_weights_env_var_is_used_for_default(tmp_path, monkeypatch, vgg):
    path = tmp_path / "from_env.pth"
    torch.save(vgg.module.state_dict(), path)
    monkeypatch.setenv(VGG_ENV, str(path))
    assert get_model("vgg16").weights == "file from_env.pth"


def test_bad_weight_files_raise_typed_errors(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsUnavailableError):
        get_model("vgg16", weights=junk)
    wrong = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, wrong)
    with pytest.raises(WeightsUnavailableError):
        get_model("vgg16", weights=wrong)
    with pytest.raises(WeightsUnavailableError):
        get_model("fashion_cnn", weights=tmp_path / "missing.pt")


def test_failed_download_falls_back_to_untrained(monkeypatch, tmp_path):
    def offline(address, timeout=None):
        assert timeout is not None and timeout <= 10  # an unreachable server must not hang a page
        raise OSError(-2, "Name or service not known")

    monkeypatch.delenv(VGG_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no cached weights
    monkeypatch.setattr(socket, "create_connection", offline)
    with pytest.raises(WeightsUnavailableError, match="make weights"):
        get_model("vgg16")
    model, warning = get_model_or_untrained("vgg16")
    assert not model.trained and "untrained" in model.weights
    assert "Name or service not known" in warning


def test_unknown_model_name():
    with pytest.raises(ValueError, match="unknown model"):
        get_model("resnet")


def test_relus_are_not_inplace_and_module_in_eval(vgg, fashion):
    for model in (vgg, fashion):
        assert not model.module.training
        assert all(not m.inplace for m in model.module.modules() if isinstance(m, torch.nn.ReLU))


def test_top_k_probabilities(fashion):
    top = fashion.top_k(fashion.preprocess(photo((28, 28))), k=10)
    assert len(top) == 10 and abs(sum(p for _, p in top) - 1) < 1e-4
    assert [p for _, p in top] == sorted((p for _, p in top), reverse=True)


@pytest.mark.slow
def test_committed_fashion_weights_reach_target_accuracy(fashion):
    images, labels = load_fashion_mnist("test")
    accuracy = evaluate(fashion.module, images, labels)
    recorded = json.loads(FASHION_WEIGHTS.with_suffix(".json").read_text())
    assert accuracy >= 0.925
    assert accuracy == pytest.approx(recorded["test_accuracy"], abs=2e-3)


# ---- any torchvision architecture, and the teacher's config file ---------------------


def test_torchvision_architecture_with_a_local_state_dict(tmp_path, resnet):
    path = tmp_path / "resnet18.pth"
    torch.save(resnet.module.state_dict(), path)
    loaded = torchvision_model("resnet18", path, name="course_resnet", title="ResNet-18 (course)")
    assert loaded.trained and loaded.weights == "file resnet18.pth" and loaded.title == "ResNet-18 (course)"
    x = resnet.preprocess(photo())
    torch.testing.assert_close(loaded.logits(x), resnet.logits(x))
    assert loaded.mean == IMAGENET_MEAN and len(loaded.labels) == 1000
    with pytest.raises(ModelConfigError, match="not a torchvision"):
        torchvision_model("resnet19")
    with pytest.raises(WeightsUnavailableError, match="not a resnet34 state dict"):
        torchvision_model("resnet34", path)


def test_config_file_adds_models_students_see_only_by_title(tmp_path, monkeypatch, resnet):
    torch.save(resnet.module.state_dict(), tmp_path / "weights.pth")
    config = tmp_path / "models.toml"
    config.write_text(
        '[my_resnet]\ntitle = "ResNet-18 (our weights)"\narchitecture = "resnet18"\nweights = "weights.pth"\n'
    )
    monkeypatch.setenv(CONFIG_ENV, str(config))
    assert model_names()["my_resnet"] == "ResNet-18 (our weights)"
    assert list(model_names())[: len(MODEL_NAMES)] == list(MODEL_NAMES)
    model = get_model("my_resnet")  # a relative path is read next to the config file
    assert model.trained and model.name == "my_resnet" and model.layer("layer4.1.add").rf == 435
    assert not get_model("my_resnet", weights=None).trained


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[x]\ntitle = 'X'\narchitecture = 'resnet18'\n", "needs weights"),
        ("[x]\ntitle = 'X'\narchitecture = 'nonet'\nweights = 'w.pth'\n", "not in torchvision"),
        ("[vgg16]\ntitle = 'X'\narchitecture = 'vgg16'\nweights = 'w.pth'\n", "not a shipped model"),
        ("[x\n", "Cannot read"),
    ],
)
def test_bad_config_files_raise_clear_errors(tmp_path, text, message):
    config = tmp_path / "models.toml"
    config.write_text(text)
    with pytest.raises(ModelConfigError, match=message):
        configured_models(config)
