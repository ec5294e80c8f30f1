"""The network overview: stages by map size, their most active channels, and what feeds a channel."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from app.analyses import overview as O
from app.networks.activations import activations
from app.networks.layers import layer_table
from app.networks.loaded import LoadedModel
from tests.conftest import photo


def _two_convs() -> LoadedModel:
    """conv(3->4) -> relu -> conv(4->5): the second conv is linear in the relu's output."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 3, padding=1), nn.Flatten())
    model = LoadedModel(
        "two", "two", net.eval(), ("a",), 8, (0.0,) * 3, (1.0,) * 3, "seeded", False, torch.device("cpu")
    )
    model.layers = layer_table(net, (3, 8, 8))
    return model


def test_feeding_channels_through_one_convolution_are_weight_times_activation() -> None:
    """Hand oracle: channel j's share in conv2's channel c is sum over the map of conv(a_j, w[c, j]) (no bias)."""
    model = _two_convs()
    x = torch.randn(1, 3, 8, 8)
    conv2 = model.module[2]
    a = torch.relu(model.module[0](x)).detach()
    for c in range(5):
        share = O.feeding_channels(model, x, "relu1_1", "conv1_2", c)
        expected = [
            float(F.conv2d(a[:, j : j + 1], conv2.weight[c : c + 1, j : j + 1], padding=1).sum()) for j in range(4)
        ]
        np.testing.assert_allclose(share, expected, rtol=1e-5, atol=1e-6)


def test_feeding_channels_leave_the_shared_network_as_it_was(fashion) -> None:
    x = fashion.preprocess(photo((28, 28), seed=1))
    before = {k: v.clone() for k, v in fashion.module.state_dict().items()}
    busiest = int(activations(fashion, x)["relu2_2"][0].mean(dim=(1, 2)).argmax())  # a dead channel has no feeders
    share = O.feeding_channels(fashion, x, "relu1_2", "relu2_2", busiest)
    assert share.shape == (fashion.layer("relu1_2").out_shape[0],) and np.abs(share).sum() > 0
    assert all(torch.equal(v, before[k]) for k, v in fashion.module.state_dict().items())
    assert not any(p.grad is not None for p in fashion.module.parameters())


def test_stages_follow_the_map_sizes(fashion, vgg, lite) -> None:
    sizes = {
        name: [m.layer(s).out_shape[1] for s, _ in O.stage_layers(m)]
        for name, m in (("fashion", fashion), ("vgg", vgg), ("lite", lite))
    }
    assert sizes["vgg"] == [224, 112, 56, 28, 14, 7]
    assert sizes["lite"] == [112, 56, 28, 14, 7]
    assert sizes["fashion"] == sorted(sizes["fashion"], reverse=True) and len(sizes["fashion"]) >= 2
    shown = [s for s, _ in O.stage_layers(vgg)]
    assert shown == ["relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3", "pool5"]  # the last layer of each size
    lite_shown = [s for s, _ in O.stage_layers(lite)]
    assert any(lite.layer(s).kind == "add" for s in lite_shown)  # where a stage has residual additions, its last


def test_a_teachers_resnet_is_drawn_block_by_block(resnet) -> None:
    """ResNet-18 (a teacher's torchvision network): 112 px stem, then four stages ending in residual additions."""
    x = resnet.preprocess(photo((300, 200), seed=4))
    ov = O.overview(resnet, x)
    assert [s.layer for s in ov.stages] == ["relu", "layer1.1.add", "layer2.1.add", "layer3.1.add", "layer4.1.add"]
    assert [(len(s.blocks), s.additions) for s in ov.stages[1:]] == [(2, 2)] * 4
    assert ov.stages[-1].shape == (512, 7, 7)


def test_overview_shows_the_most_active_channels_small(lite) -> None:
    x = lite.preprocess(photo((300, 200), seed=2))
    ov = O.overview(lite, x, per_stage=3)
    assert [s.layer for s in ov.stages] == [s for s, _ in O.stage_layers(lite)]
    for stage in ov.stages:
        assert len(stage.channels) == 3 and list(stage.strengths) == sorted(stage.strengths, reverse=True)
        assert stage.maps.shape[0] == 3 and max(stage.maps.shape[1:]) <= O.THUMB
        assert stage.additions == sum(lite.layer(n).kind == "add" for n in dict(O.stage_layers(lite))[stage.layer])
    assert sum(s.additions for s in ov.stages) == sum(r.kind == "add" for r in lite.layers)
    assert ov.top[0] == lite.top_k(x, 1)[0]


def test_the_diagram_numbers_every_map_and_frames_the_choice_and_its_feeders(fashion) -> None:
    from app.pictures.overview import FEEDER, HIGHLIGHT, network_figure

    ov = O.overview(fashion, fashion.preprocess(photo((28, 28), seed=5)))
    first, last = ov.stages[0], ov.stages[-1]
    chosen, feeder = (last.layer, last.channels[0]), (first.layer, first.channels[1])
    fig = network_figure(ov, np.zeros((28, 28, 3), np.uint8), chosen, frozenset({feeder}))
    numbers = sorted(a.text for a in fig.layout.annotations if a.text.isdigit())
    assert numbers == sorted(str(c) for s in ov.stages for c in s.channels)  # every tile numbered visibly
    assert sorted(s.line.color for s in fig.layout.shapes) == sorted([HIGHLIGHT, FEEDER])
    clickable = [tuple(t.customdata[0]) for t in fig.data if t.type == "scatter"]
    assert clickable == [(s.layer, c) for s in ov.stages for c in s.channels]  # a click names its map
