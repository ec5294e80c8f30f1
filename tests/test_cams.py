"""Grad-CAM++, LayerCAM and Score-CAM against the `grad-cam` package (jacobgil/pytorch-grad-cam) as oracle."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAMPlusPlus, LayerCAM, ScoreCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from app.analyses import attribution as attr
from app.analyses import cams
from app.networks.loaded import LoadedModel
from tests.oracles import pearson, predicted, private_copy, real_input

ORACLES = {cams.grad_cam_plus_plus: GradCAMPlusPlus, cams.layer_cam: LayerCAM, cams.score_cam: ScoreCAM}

# (fixture, input side, the module whose output is the default CAM layer: ResNet's last ReLU
# module runs twice per block, so a hook on it would see two tensors; the block's output is the one)
NETWORKS = [("fashion", 28, None), ("lite", 96, None), ("resnet", 64, "layer4")]


def oracle_map(model: LoadedModel, method, x: torch.Tensor, target: int, module_path: str | None) -> np.ndarray:
    module = private_copy(model)
    path = module_path or model.layer(attr.default_cam_layer(model)).path
    with ORACLES[method](module, [module.get_submodule(path)]) as cam:
        if method is cams.score_cam:
            cam.batch_size = 64
        return cam(x.clone(), targets=[ClassifierOutputTarget(target)])[0]


# Score-CAM runs one forward pass per channel, twice (ours and the oracle's): 1280 channels on
# EfficientNet-Lite0 and 512 on ResNet-18 make those two cases slow.
CASES = [
    pytest.param(
        method,
        *network,
        id=f"{method.__name__}-{network[0]}",
        marks=[pytest.mark.slow] if method is cams.score_cam and network[0] != "fashion" else [],
    )
    for method in ORACLES
    for network in NETWORKS
]


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(("method", "name", "side", "module_path"), CASES)
def test_cams_match_the_grad_cam_package(
    request: pytest.FixtureRequest, method, name: str, side: int, module_path: str | None
) -> None:
    model = request.getfixturevalue(name)
    x = real_input(model, side)
    target = predicted(model, x)
    ours = method(model, x, target)
    expected = oracle_map(model, method, x, target, module_path)
    assert ours.shape == expected.shape == tuple(x.shape[-2:])
    assert ours.min() >= 0 and expected.min() >= 0
    assert pearson(ours, expected) >= 0.999


def test_cams_differ_from_grad_cam_and_each_other(fashion: LoadedModel) -> None:
    """The methods are not Grad-CAM under another name: on a real image their maps differ."""
    x = real_input(fashion, 28)
    target = predicted(fashion, x)
    maps = [attr.grad_cam(fashion, x, target)] + [m(fashion, x, target) for m in ORACLES]
    for i in range(len(maps)):
        for j in range(i + 1, len(maps)):
            assert not np.allclose(maps[i] / maps[i].max(), maps[j] / maps[j].max(), atol=1e-3)


def test_score_cam_reports_progress_per_batch_and_ignores_batch_size(fashion: LoadedModel) -> None:
    x = real_input(fashion, 28)
    calls: list[tuple[int, int]] = []
    whole = cams.score_cam(fashion, x, 3, batch=64)
    parts = cams.score_cam(fashion, x, 3, progress=lambda i, n: calls.append((i, n)), batch=24)
    assert calls == [(24, 64), (48, 64), (64, 64)]
    np.testing.assert_allclose(parts, whole, rtol=1e-4, atol=1e-6 * float(whole.max()))


def test_layer_cam_at_an_early_layer_keeps_its_resolution(fashion: LoadedModel) -> None:
    """LayerCAM works at any spatial layer; at relu1_1 (28x28) no upsampling is needed."""
    x = real_input(fashion, 28)
    target = predicted(fashion, x)
    act = attr.layer_output(fashion, x, "relu1_1")
    module = private_copy(fashion)
    with LayerCAM(module, [module.get_submodule(fashion.layer("relu1_1").path)]) as cam:
        expected = cam(x.clone(), targets=[ClassifierOutputTarget(target)])[0]
    ours = cams.layer_cam(fashion, x, target, "relu1_1")
    assert act.shape[-2:] == ours.shape
    assert pearson(ours, expected) >= 0.999


def test_bad_layer_and_target_are_refused(fashion: LoadedModel) -> None:
    x = real_input(fashion, 28)
    with pytest.raises(ValueError, match="spatial"):
        cams.layer_cam(fashion, x, 0, "fc3")
    with pytest.raises(ValueError, match="class index"):
        cams.grad_cam_plus_plus(fashion, x, 10)
