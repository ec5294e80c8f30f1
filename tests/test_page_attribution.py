"""AppTest of the attribution page: every tab renders for both models and follows its widgets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

from app.analyses import attribution as attr
from app.analyses import explanations as xp
from app.networks.fashion import fashion_input, looks_like_fashion_mnist
from app.networks.images import load_image
from app.networks.models import LoadedModel, get_model
from tests.conftest import photo, png_bytes

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "attribution.py")
IMAGE = png_bytes(photo((96, 64), seed=2))


def _app(model: str, tab: str | None = None) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=300)
    at.session_state["model_name"] = model
    at.session_state["image_bytes"] = IMAGE
    if tab:
        at.session_state["attr_tab"] = tab
    return at.run()


def _ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def _model_input(name: str = "fashion_cnn") -> tuple[LoadedModel, torch.Tensor]:
    """What the page sees: the same model (fallbacks included) and the same decoded image."""
    model = get_model(name)  # trained weights: the same network the page loads
    image = load_image(IMAGE)
    intake = "dataset" if looks_like_fashion_mnist(image) else "photo"  # what pages/common.py picks on "auto"
    return model, fashion_input(model, image, intake)[1]


def _charts(at: AppTest) -> list:
    return at.get("plotly_chart")


def _downloads(at: AppTest) -> list[str]:
    return [b.proto.label for b in at.get("download_button")]


def test_fashion_saliency_tab_defaults_to_the_prediction_and_offers_smoothgrad() -> None:
    at = _ok(_app("fashion_cnn"))
    assert at.title[0].value == "Which pixels matter?"
    assert [t.label for t in at.tabs] == [
        "Saliency",
        "Guided backprop",
        "Grad-CAM",
        "CAM family",
        "Integrated Gradients",
        "Compare",
        "Faithfulness",
    ]
    target = at.selectbox(key="attr_target_fashion_cnn")
    model, x = _model_input()
    predicted = target.value
    assert predicted == int(model.logits(x)[0].argmax())
    assert len(_charts(at)) == 3  # alone, overlay, deletion/insertion curves
    assert _downloads(at) == ["Saliency (PNG)", "its values (.npy)", "Saliency overlay (PNG)", "its values (.npy)"]

    at.toggle(key="attr_smooth").set_value(True).run()
    at.slider(key="attr_sg_samples").set_value(4).run()
    _ok(at)
    assert any("SmoothGrad" in m.value for m in at.caption)
    assert len(_charts(at)) == 3  # alone, overlay, and now SmoothGrad's own curves

    other = (predicted + 1) % 10
    at.selectbox(key="attr_target_fashion_cnn").set_value(other).run()
    _ok(at)
    options = at.selectbox(key="attr_target_fashion_cnn").options
    assert "predicted" in options[predicted] and "predicted" not in options[other]


def test_fashion_guided_backprop_for_a_channel_defaults_to_the_most_active() -> None:
    at = _ok(_app("fashion_cnn", "Guided backprop"))
    assert len(_charts(at)) == 3  # signed picture, magnitude, curves
    at.radio(key="attr_gb_mode").set_value("one channel of a layer").run()
    at.selectbox(key="attr_gb_layer_fashion_cnn").set_value("relu1_2").run()
    _ok(at)
    model, x = _model_input()
    channel = at.number_input(key="attr_gb_channel_fashion_cnn_relu1_2")
    assert channel.value == attr.most_active_channel(model, x, "relu1_2")
    assert len(_charts(at)) == 2
    channel.set_value(3).run()
    _ok(at)
    assert any("Channel 3" in c.value for c in at.caption)


def test_fashion_grad_cam_at_another_layer_and_compare() -> None:
    at = _ok(_app("fashion_cnn", "Grad-CAM"))
    assert len(_charts(at)) == 6  # Grad-CAM alone + overlay + curves, guided Grad-CAM signed + magnitude + curves
    at.selectbox(key="attr_cam_layer_fashion_cnn").set_value("pool1").run()
    _ok(at)
    assert any("14×14 grid" in c.value for c in at.caption)
    assert len(_charts(at)) == 6
    at.session_state["attr_tab"] = "Compare"
    _ok(at.run())
    assert len(_charts(at)) == 4
    assert len(_downloads(at)) == 8
    assert any("Rank correlation" in c.value for c in at.caption)


@pytest.mark.slow
@pytest.mark.parametrize("tab", ["Compare", "Guided backprop"])
def test_vgg_tabs_render(tab: str) -> None:
    at = _ok(_app("vgg16", tab))
    assert len(_charts(at)) == (4 if tab == "Compare" else 2)  # VGG's curves wait for their button
    assert len(at.selectbox(key="attr_target_vgg16").options) == 1000


def test_long_smoothgrad_asks_first_and_only_once(monkeypatch):
    """Many noisy copies on a big network take tens of seconds: estimate, button, then no second question."""
    monkeypatch.setattr(attr, "estimate_smoothgrad_seconds", lambda model, samples: 0.5 * samples)
    st.cache_resource.clear()  # another test may have computed this very SmoothGrad already
    at = _ok(_app("fashion_cnn"))
    at.toggle(key="attr_smooth").set_value(True).run()
    _ok(at)
    assert any("SmoothGrad with 16 noisy copies takes about 8 s" in w.value for w in at.warning)
    shown = len(_charts(at))
    at.button(key="attr_sg_start").click().run()
    _ok(at)
    assert len(_charts(at)) > shown and not at.warning
    at.run()  # any later rerun: the result is cached, nothing to ask
    assert not at.warning and len(_charts(at)) > shown


# ---- the CAM family, Integrated Gradients, faithfulness ------------------------------


@pytest.mark.parametrize("method", ["Grad-CAM++", "LayerCAM", "Score-CAM"])
def test_fashion_cam_family_shows_each_method_with_its_curves(method: str) -> None:
    at = _app("fashion_cnn", "CAM family")
    at.radio(key="attr_cam_family").set_value(method).run()
    _ok(at)
    assert len(_charts(at)) == 3
    assert any(method in m.value and "gradient" in m.value for m in at.markdown)


def test_fashion_integrated_gradients_shows_the_convergence_delta() -> None:
    at = _ok(_app("fashion_cnn", "Integrated Gradients"))
    assert len(_charts(at)) == 3
    assert any("Convergence delta" in c.value for c in at.caption)
    at.radio(key="attr_ig_baseline").set_value("blurred").run()
    _ok(at)
    assert any("blurred baseline" in c.value for c in at.caption)


def _ranking(at: AppTest) -> list[str]:
    if at.warning:  # the estimate is over the limit (a busy machine, or a big network): the page asks first
        at.button(key="attr_rank_start").click().run()
        _ok(at)
    (table,) = at.dataframe
    return list(table.value["method"])


def test_fashion_faithfulness_table_ranks_the_methods_and_takes_in_slow_ones() -> None:
    st.cache_resource.clear()  # another test may have computed a slow method, which would join the table
    at = _ok(_app("fashion_cnn", "Faithfulness"))
    ranked = _ranking(at)
    assert sorted(ranked) == sorted(m for m in xp.METHODS if m not in xp.SLOW)
    scores = list(at.dataframe[0].value["score (ins − del) ↑"])
    assert scores == sorted(scores, reverse=True)
    assert any("ROAD" in i.value for i in at.info)
    at.session_state["attr_tab"] = "CAM family"
    at.run()
    at.radio(key="attr_cam_family").set_value("Score-CAM").run()
    at.session_state["attr_tab"] = "Faithfulness"
    _ok(at.run())
    assert "Score-CAM" in _ranking(at)


def test_fashion_smoothgrad_and_occlusion_maps_get_curves_and_join_the_ranking() -> None:
    st.cache_resource.clear()
    at = _app("fashion_cnn")
    at.toggle(key="attr_smooth").set_value(True).run()
    _ok(at)
    curves = json.loads(_charts(at)[-1].proto.spec)["data"]
    assert [c["name"].split()[0] for c in curves] == ["deletion", "insertion"]  # beside the SmoothGrad map
    at.session_state["attr_tab"] = "Faithfulness"
    ranked = _ranking(_ok(at.run()))
    assert "SmoothGrad" in ranked and "occlusion" not in ranked
    assert any("Occlusion page" in c.value for c in at.caption)  # where the missing map joins from
    occlusion = AppTest.from_file(str(Path(PAGE).with_name("occlusion.py")), default_timeout=300)
    occlusion.session_state["model_name"] = "fashion_cnn"
    occlusion.session_state["image_bytes"] = IMAGE
    occlusion.session_state["occ_tab"] = "Probability drop"
    _ok(occlusion.run())  # its first settings, whose curves a small network draws at once
    ranked = _ranking(_ok(at.run()))
    assert {"SmoothGrad", "occlusion"} <= set(ranked)
    assert len(ranked) == len(xp.METHODS) - len(xp.SLOW) + 2


@pytest.mark.slow  # 6 maps x 100 forward passes of EfficientNet-Lite0: 85 s on the busy shared 2-core machine
def test_efficientnet_faithfulness_table_and_cam_family_render() -> None:
    at = _ok(_app("efficientnet_lite0", "Faithfulness"))
    assert len(_ranking(at)) == len(xp.METHODS) - len(xp.SLOW)
    at.session_state["attr_tab"] = "CAM family"
    _ok(at.run())
    at.radio(key="attr_cam_family").set_value("LayerCAM").run()
    _ok(at)
    assert len(_charts(at)) >= 2
