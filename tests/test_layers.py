"""Layer table: names, shapes, parameter counts and receptive fields."""

from __future__ import annotations

import torch
from torch import nn

from app.networks.layers import describe_rf, layer_table


def test_vgg_receptive_fields_match_known_values(vgg):
    conv5_3, pool5 = vgg.layer("conv5_3"), vgg.layer("pool5")
    assert (conv5_3.rf, conv5_3.rf_stride) == (196, 16)
    assert (pool5.rf, pool5.rf_stride) == (212, 32)
    assert (vgg.layer("conv1_1").rf, vgg.layer("pool1").rf) == (3, 6)


def test_vgg_names_follow_the_paper(vgg):
    names = [r.name for r in vgg.layers]
    convs = [n for n in names if n.startswith("conv")]
    assert convs[:3] == ["conv1_1", "conv1_2", "conv2_1"] and len(convs) == 13
    assert [n for n in names if n.startswith("fc")] == ["fc6", "fc7", "fc8"]
    assert len(set(names)) == len(names)


def test_shapes_and_params(vgg, fashion):
    assert vgg.layer("conv5_3").out_shape == (512, 14, 14)
    assert vgg.layer("fc8").out_shape == (1000,)
    assert fashion.layer("pool2").out_shape == (64, 7, 7)
    for model in (vgg, fashion):
        assert sum(r.params for r in model.layers) == sum(p.numel() for p in model.module.parameters())


def test_hand_computed_receptive_field_with_stride_and_dilation():
    net = nn.Sequential(nn.Conv2d(1, 1, 5, stride=2), nn.MaxPool2d(3, stride=3), nn.Conv2d(1, 1, 3, dilation=2))
    rows = layer_table(net, (1, 64, 64))
    # rf: 1 + 4*1 = 5 (jump 2); + 2*2 = 9 (jump 6); + (2*2)*6 = 33 (jump 6)
    assert [(r.rf, r.rf_stride) for r in rows] == [(5, 2), (9, 6), (33, 6)]


def test_rf_description_clips_to_image(fashion):
    assert describe_rf(fashion.layer("conv1_1"), 28) == "3x3"
    assert describe_rf(fashion.layer("fc4"), 28) == "whole image"
    big = layer_table(nn.Sequential(*[nn.Conv2d(1, 1, 3) for _ in range(20)]), (1, 48, 48))[-1]
    assert describe_rf(big, 28) == "41x41 (image is 28)"


def test_table_has_no_side_effects(fashion):
    before = {k: v.clone() for k, v in fashion.module.state_dict().items()}
    layer_table(fashion.module, (1, 28, 28))
    for k, v in fashion.module.state_dict().items():
        assert torch.equal(v, before[k])
