"""AppTest of "Convolution, step by step": it renders for both trained models, its animations carry one
frame per step, and the checks it prints against PyTorch come out at rounding level."""

from __future__ import annotations

import json
import re

import pytest

from tests.apptest import open_page

PAGE = "pages/convolution.py"


def _figure(at, key: str) -> dict:
    return next(json.loads(el.proto.spec) for el in at.get("plotly_chart") if key in el.proto.id)


def _differences(at) -> list[float]:
    """Every 'largest difference … 1e-16' / 'agrees to …' number the page prints."""
    found = []
    for c in at.caption:
        found += [float(v) for v in re.findall(r"(?:difference(?: from the sweep's)?|agrees to) ([0-9.e+-]+)", c.value)]
    return found


@pytest.mark.parametrize("model", ["fashion_cnn", "efficientnet_lite0"])
def test_page_renders_with_the_real_first_filter(model: str) -> None:
    at = open_page(model, PAGE)
    assert [t.label for t in at.tabs] == ["Convolution", "ReLU & max pooling", "Backward pass"]
    conv = _figure(at, "cs_conv")
    stride = 2 if model == "efficientnet_lite0" else 1  # the first conv's own stride is the default
    padding = 1 if model == "fashion_cnn" else 0
    side = (8 + 2 * padding - 2 - 1) // stride + 1  # the default crop is 8x8
    assert len(conv["frames"]) == side * side
    assert [b["label"] for b in conv["layout"]["updatemenus"][0]["buttons"]] == ["▶ 1/s", "▶ 3/s", "▶ 10/s", "❚❚ Pause"]
    fastest = conv["layout"]["updatemenus"][0]["buttons"][2]["args"][1]["frame"]["duration"]
    assert fastest <= 100  # at least 10 frames a second
    assert any(rf"\right\rfloor + 1 = {side} \end{{aligned}}" in m.value for m in at.get("latex"))
    diffs = _differences(at)
    assert len(diffs) == 6 and max(diffs) < 1e-9, diffs


def test_hand_made_example_with_stride_padding_and_dilation() -> None:
    at = open_page("fashion_cnn", PAGE)
    at.radio(key="cs_source").set_value("a small hand-made example (7×7)").run()
    at.radio(key="cs_kernel_kind").set_value("my own (editable)").run()
    at.slider(key="cs_stride").set_value(2).run()
    at.slider(key="cs_padding").set_value(2).run()
    at.slider(key="cs_dilation").set_value(2).run()
    assert not at.exception, [e.value for e in at.exception]
    # floor((7 + 4 - 4 - 1) / 2) + 1 = 4
    assert len(_figure(at, "cs_conv")["frames"]) == 16
    assert len(_figure(at, "cs_dw")["frames"]) == 9  # one step per weight of the 3x3 kernel
    diffs = _differences(at)
    assert len(diffs) == 6 and max(diffs) < 1e-9, diffs


def test_a_kernel_too_wide_for_the_input_is_explained() -> None:
    at = open_page("fashion_cnn", PAGE)
    at.radio(key="cs_source").set_value("a small hand-made example (7×7)").run()
    at.radio(key="cs_kernel_kind").set_value("my own (editable)").run()
    at.slider(key="cs_padding").set_value(0).run()
    at.select_slider(key="cs_size").set_value(5).run()
    at.slider(key="cs_dilation").set_value(2).run()
    assert not at.exception
    assert any("spans 9 pixels" in e.value for e in at.error)
