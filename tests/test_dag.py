"""Analyses on real CNN graphs, not only chains: ResNet-18 (residual additions, a ReLU module
called twice per block, 1x1 downsampling) and EfficientNet-Lite0 (depthwise and 1x1
convolutions, ReLU6, asymmetric "SAME" padding)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from captum.attr import GuidedBackprop, LayerAttribution, LayerGradCam, Occlusion
from torch import nn

from app.analyses import attribution as attr
from app.analyses import embedding, filters, playground
from app.analyses import occlusion as occ
from app.networks.activations import activations, feature_graph
from app.networks.layers import layer_table
from app.networks.loaded import LoadedModel
from app.networks.models import torchvision_model
from tests.conftest import photo

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:captum.*")


def _hooks(module: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) + len(m._backward_pre_hooks)
        for m in module.modules()
    )


def _small(model: LoadedModel, size: int = 112) -> torch.Tensor:
    """112 px: every oracle comparison holds at any size, at a quarter of the cost."""
    return model.to_tensor(photo((size, size), seed=3))


# ---- the layer table on a DAG --------------------------------------------------------


def test_resnet_table_follows_the_graph(resnet):
    names = [r.name for r in resnet.layers]
    assert names[:4] == ["conv1", "bn1", "relu", "maxpool"]
    assert names.index("layer1.0.bn2") < names.index("layer1.0.add") < names.index("layer1.0.relu_1")
    assert names[-3:] == ["avgpool", "flatten", "fc"] and len(set(names)) == len(names)
    assert resnet.layer("layer1.0.relu_1").path == "layer1.0.relu"  # the same module, called again
    assert sum(r.params for r in resnet.layers) == sum(p.numel() for p in resnet.module.parameters())
    last = resnet.layer("layer4.1.relu_1")
    assert (last.rf, last.rf_stride, last.out_shape) == (435, 32, (512, 7, 7))  # ResNet-18's known field
    assert resnet.layer("fc").rf is None


def test_efficientnet_table_reads_block_by_block(lite):
    names = [r.name for r in lite.layers]
    assert names[:4] == ["stem.pad", "stem.conv", "stem.bn", "stem.relu"]
    block = [n.removeprefix("stage2.block2.") for n in names if n.startswith("stage2.block2.")]
    assert block == [
        *("expand_conv", "expand_bn", "expand_relu"),
        *("depthwise_conv", "depthwise_bn", "depthwise_relu"),
        *("project_conv", "project_bn", "add"),
    ]
    depthwise = lite.layer("stage2.block2.depthwise_conv")
    assert depthwise.params == 144 * 3 * 3 and depthwise.out_shape == (144, 56, 56)
    assert lite.layer("stage2.block2.expand_relu").type == "ReLU6"
    assert sum(r.params for r in lite.layers) == 4_652_008


def _gradient_copy(module: nn.Module) -> nn.Module:
    """A copy whose input gradient is non-zero exactly on each unit's receptive field: activations
    become identities, max-pools average pools, and weights positive (no cancellation)."""
    net = copy.deepcopy(module).float()
    for path, m in list(net.named_modules()):
        parent = net.get_submodule(path.rpartition(".")[0]) if "." in path else net
        name = path.rpartition(".")[2]
        if isinstance(m, nn.ReLU | nn.ReLU6):
            setattr(parent, name, nn.Identity())
        elif isinstance(m, nn.MaxPool2d):
            setattr(parent, name, nn.AvgPool2d(m.kernel_size, m.stride, m.padding))
        elif isinstance(m, nn.Conv2d):
            with torch.no_grad():
                m.weight.copy_(m.weight.abs() + 0.01)
    return net.eval()


def _support(graph: nn.Module, layer: str, size: int, i: int, j: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Bounding box (rows, cols; first and last pixel) of the input gradient of unit (i, j) of channel 0."""
    x = torch.rand(1, 3, size, size, requires_grad=True)
    out = graph(x)[layer]
    (grad,) = torch.autograd.grad(out[0, 0, i, j], [x])
    rows = grad[0].abs().sum(0).sum(1).nonzero().ravel()
    cols = grad[0].abs().sum(0).sum(0).nonzero().ravel()
    return (int(rows[0]), int(rows[-1])), (int(cols[0]), int(cols[-1]))


@pytest.mark.parametrize(
    ("name", "layer"),
    [
        ("resnet", "maxpool"),
        ("resnet", "layer1.1.relu_1"),
        ("resnet", "layer2.0.add"),  # a downsampling block: 1x1 stride-2 shortcut + two 3x3 convs
        ("lite", "stage2.block1.depthwise_conv"),  # after TensorFlow's asymmetric padding
        ("lite", "stage3.block2.add"),
        ("lite", "stage4.block1.depthwise_relu"),
    ],
)
def test_receptive_fields_equal_the_input_gradient_support(request, name, layer):
    model = request.getfixturevalue(name)
    row = model.layer(layer)
    graph = feature_graph(_gradient_copy(model.module), {row.graph_node: layer})
    size = 224
    n = row.out_shape[-1]
    for i, j in [(n // 2, n // 2), (0, 0), (n - 1, 1)]:  # the middle, a corner, the bottom border
        rows, cols = _support(graph, layer, size, i, j)
        assert rows == row.rf_box(i, size) and cols == row.rf_box(j, size), (i, j)
    middle = _support(graph, layer, size, n // 2, n // 2)[0]
    assert middle[1] - middle[0] + 1 == row.rf  # not clipped: the full field


# ---- every analysis on ResNet-18 ----------------------------------------------------


def test_every_backend_function_runs_on_resnet(resnet):
    x = _small(resnet)
    outs = activations(resnet, x)
    assert list(outs) == [r.name for r in resnet.layers]
    torch.testing.assert_close(outs["fc"], resnet.logits(x))
    assert filters.first_layer_filters(resnet).shape == (64, 7, 7, 3)
    assert filters.filter_channels(resnet, "layer1.0.conv1", 0).shape == (64, 3, 3)
    assert attr.saliency(resnet, x, 1).shape == (112, 112)
    assert attr.guided_backprop(resnet, x, layer="layer2.0.add", channel=3).shape == (3, 112, 112)
    assert attr.default_cam_layer(resnet) == "layer4.1.relu_1"
    maps = attr.class_maps(resnet, x, 1)
    np.testing.assert_allclose(maps["Grad-CAM"], attr.grad_cam(resnet, x, 1), rtol=1e-5, atol=1e-7)
    assert embedding.penultimate_layer(resnet) == "flatten"
    images = [photo((112, 112), seed=s) for s in range(2)]
    feats = embedding.features(resnet, images, precision="fp32")
    assert feats.shape == (2, 512)
    expected = [int(resnet.logits(resnet.preprocess(img))[0].argmax()) for img in images]
    assert embedding.predict(resnet, feats).tolist() == expected
    last = playground.last_layer(resnet, x)
    np.testing.assert_allclose(last["logits"], resnet.logits(x)[0].numpy(), rtol=1e-4, atol=1e-4)
    assert occ.engine_name(resnet) == "dense" and occ.estimate_seconds(resnet, 32, 16) > 0
    assert _hooks(resnet.module) == 0 and all(p.grad is None for p in resnet.module.parameters())


def test_grad_cam_defaults_to_the_activation_after_the_last_conv():
    mobilenet = torchvision_model("mobilenet_v3_small")  # conv, batch norm, Hardswish
    assert attr.default_cam_layer(mobilenet) == "features.12.2"
    assert mobilenet.layer("features.12.2").type == "Hardswish"


def test_guided_backprop_on_resnet_matches_captum(resnet):
    x = _small(resnet)
    target = int(resnet.logits(x)[0].argmax())
    expected = GuidedBackprop(resnet.module).attribute(x.clone(), target=target)[0]
    ours = attr.guided_backprop(resnet, x, target=target)
    np.testing.assert_allclose(ours, expected.detach().numpy(), rtol=0, atol=1e-5 * float(expected.abs().max()))


@pytest.mark.parametrize(("name", "module_path"), [("resnet", "layer4.1.relu"), ("lite", "head.relu")])
def test_saliency_and_grad_cam_match_captum_on_dags(request, name, module_path):
    """captum's LayerGradCam hooks the module: for ResNet's reused ReLU that is its last call."""
    model = request.getfixturevalue(name)
    x = _small(model)
    target = int(model.logits(x)[0].argmax())
    cam = LayerGradCam(model.module, model.module.get_submodule(module_path))
    coarse = cam.attribute(x.clone(), target=target, relu_attributions=True)
    expected = LayerAttribution.interpolate(coarse, (112, 112), "bilinear")[0, 0].detach().numpy()
    ours = attr.grad_cam(model, x, target)
    assert expected.max() > 0
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5 * float(expected.max()))
    leaf = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model.module(leaf)[0, target], [leaf])
    np.testing.assert_allclose(attr.saliency(model, x, target), grad[0].abs().amax(0).numpy(), rtol=0, atol=1e-6)


def test_occlusion_on_a_dag_falls_back_to_whole_images_and_equals_captum(resnet):
    x = _small(resnet, 64)
    result = occ.occlusion_map(resnet, x, 16, 12, baseline=0.0, precision="exact")
    assert result.engine == "dense" and result.precision == "fp32"
    target = int(np.argmax(result.base_logits))
    expected = Occlusion(resnet.module).attribute(
        x.clone(), sliding_window_shapes=(3, 16, 16), strides=(3, 12, 12), baselines=0.0, target=target
    )
    ours = occ.captum_attribution(result, target, (64, 64))
    np.testing.assert_allclose(ours, expected[0, 0].numpy(), rtol=0, atol=1e-4 * float(expected.abs().max()))


# ---- ReLU6: its own guided rule -----------------------------------------------------


def test_guided_relu6_rule_by_hand():
    x = torch.tensor([-1.0, 0.5, 3.0, 7.0], requires_grad=True)
    out = attr.guided_relu6(x)
    torch.testing.assert_close(out, nn.functional.relu6(x))
    (grad,) = torch.autograd.grad(out, [x], torch.tensor([1.0, 1.0, -1.0, 1.0]))
    # dead (x < 0), passes, blocked (negative gradient), saturated (x > 6): active, so it passes too,
    # although ReLU6 is flat there (the guided rule asks whether the unit is on, not its derivative)
    assert grad.tolist() == [0.0, 1.0, 0.0, 1.0]


def _relu6_net() -> LoadedModel:
    """One pixel in, four 1x1-conv channels through ReLU6, one score out: every case of the rule."""
    net = nn.Sequential(nn.Conv2d(1, 4, 1), nn.ReLU6(), nn.Flatten(), nn.Linear(4, 1, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([1.0, -1.0, 3.5, 0.5]).view(4, 1, 1, 1))
        net[0].bias.copy_(torch.tensor([0.5, 0.0, 0.0, 0.0]))
        net[3].weight.copy_(torch.tensor([[2.0, 1.0, 1.0, -3.0]]))
    model = LoadedModel(
        "relu6", "relu6", net.eval(), ("score",), 1, (0.0,), (1.0,), "hand-set", True, torch.device("cpu")
    )
    model.layers = layer_table(net, (1, 1, 1))
    return model


def test_guided_backprop_through_relu6_by_hand():
    """x = 2: pre-activations 2.5 (linear), -2 (dead), 7 (saturated), 1 (linear, but its weight -3 is negative).
    Plain gradient: 2*1 + (-3)*0.5 = 0.5 (the saturated channel is flat). Guided: channels 0 and 2 are on
    and their incoming gradients positive: 2*1 + 1*3.5 = 5.5 (the strict rule, blocking saturated units,
    would give 2)."""
    model = _relu6_net()
    x = torch.full((1, 1, 1, 1), 2.0)
    assert attr.saliency(model, x, 0).item() == pytest.approx(0.5)
    assert attr.guided_backprop(model, x, target=0).item() == pytest.approx(5.5)


def test_efficientnet_guided_graph_has_no_plain_relu6_left(lite):
    guided = attr.private_graph(lite, True)
    called = [n for n in guided.graph.nodes if n.op == "call_module"]
    assert not any(isinstance(lite.module.get_submodule(n.target), nn.ReLU6) for n in called)
    relu6_rows = sum(r.type == "ReLU6" for r in lite.layers)
    assert relu6_rows == 33 and sum(n.target is attr.guided_relu6 for n in guided.graph.nodes) == relu6_rows
    x = _small(lite)
    g = attr.guided_backprop(lite, x, target=285)
    assert g.shape == (3, 112, 112) and np.abs(g).max() > 0
    assert _hooks(lite.module) == 0


def test_feature_space_and_playground_on_efficientnet(lite):
    assert embedding.penultimate_layer(lite) == "dropout"
    x = _small(lite)
    img = photo((112, 112), seed=3)
    feats = embedding.features(lite, [img], precision="fp32")
    assert feats.shape == (1, 1280) and (feats >= 0).all() and (feats <= 6).all()  # averaged ReLU6 outputs
    assert embedding.predict(lite, feats).tolist() == [int(lite.logits(lite.preprocess(img))[0].argmax())]
    last = playground.last_layer(lite, x)
    np.testing.assert_allclose(last["logits"], lite.logits(x)[0].numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("name", "layer"),
    [
        ("resnet", "layer2.0.add"),
        ("lite", "stage2.block1.depthwise_conv"),  # after TensorFlow's asymmetric ZeroPad2d
        ("lite", "stage4.block1.depthwise_relu"),
    ],
)
def test_unit_boxes_agree_with_the_layer_table_on_dags(request, name, layer):
    """What units look for (app.analyses.dataset_examples) and the layer table place a unit's field alike."""
    from app.analyses.dataset_examples import receptive_box

    model = request.getfixturevalue(name)
    row, size = model.layer(layer), model.input_size
    n = row.out_shape[-1]
    for i, j in [(n // 2, n // 2), (0, 0), (n - 1, 1)]:
        top, left, bottom, right = receptive_box(model, layer, i, j)
        clipped = (max(top, 0), min(bottom, size) - 1), (max(left, 0), min(right, size) - 1)
        assert clipped == (row.rf_box(i, size), row.rf_box(j, size)), (i, j)
