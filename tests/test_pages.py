"""The foundation pages render for both models with a sample image, without exceptions."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from app.base.errors import WeightsUnavailableError
from app.networks.models import VGG_ENV
from app.pictures import figures
from pages import cache
from tests.apptest import open_page, plotly_charts, rerun_fragment

MODELS = ["fashion_cnn", "vgg16"]


def _select(at, label):
    return next(s for s in at.selectbox if s.label == label)


@pytest.mark.parametrize("model_name", MODELS)
def test_prediction_page(model_name):
    at = open_page(model_name)
    assert "What does" in at.title[0].value
    assert any("Top-1" in m.value for m in at.markdown)
    assert len(plotly_charts(at)) == 1
    table = at.dataframe[0].value
    assert {"layer", "type", "output", "params", "field", "stride"} <= set(table.columns)
    if model_name == "vgg16":
        assert table.set_index("layer").loc["conv5_3", "field"] == "196×196"
        assert any("not been trained" in w.value for w in at.warning) or "ImageNet" in at.caption[0].value


def test_missing_weights_banner_speaks_to_students_and_retries_once(monkeypatch):
    calls: list[float] = []

    def offline(connect_timeout: float = 5.0) -> None:
        calls.append(connect_timeout)
        raise WeightsUnavailableError("could not download them: [Errno -2] Name or service not known")

    monkeypatch.delenv(VGG_ENV, raising=False)
    monkeypatch.setattr(cache, "fetch_vgg16_weights", offline)
    monkeypatch.setattr(cache, "_retries", {})
    monkeypatch.setattr(cache, "_retry_errors", {})
    at = open_page("vgg16")
    if cache.model("vgg16")[0].trained:
        pytest.skip("the pretrained weights are available here: no banner to test")
    (banner,) = at.warning
    assert "not been trained" in banner.value and "Errno" not in banner.value and "make" not in banner.value
    cache._retries["vgg16"].join(10)
    at.switch_page("pages/filters.py").run()
    (details,) = [e for e in at.expander if e.label == "Details for the teacher"]
    assert "failed too" in details.markdown[0].value and "Errno" in details.markdown[0].value
    assert calls == [5.0]  # one background attempt per process, not one per page


def test_weights_that_arrive_later_replace_the_untrained_network(monkeypatch, vgg):
    """The background retry's model is swapped in by the next page run, and results computed with the
    random weights (cached under the same keys) are dropped."""
    open_page("vgg16")
    models = cache._shared_models()
    monkeypatch.setitem(models, "vgg16", (models["vgg16"][0], "offline"))  # restored after the test
    monkeypatch.delenv(VGG_ENV, raising=False)
    monkeypatch.setattr(cache, "fetch_vgg16_weights", lambda: None)
    monkeypatch.setattr(cache, "get_model", lambda name: vgg)
    monkeypatch.setattr(cache, "_retries", {})
    monkeypatch.setattr(cache, "_retry_errors", {})
    cache.shared(("a result computed with random weights",), lambda: 1)
    cache.retry_weights("vgg16")
    cache._retries["vgg16"].join(10)
    at = open_page("vgg16")
    assert cache.model("vgg16") == (vgg, None)
    assert not at.warning and not cache.has_shared(("a result computed with random weights",))


@pytest.mark.parametrize("model_name", MODELS)
def test_activations_page_grid_and_channel(model_name):
    at = open_page(model_name, "pages/activations.py")
    assert at.title[0].value == "Activations"
    assert len(plotly_charts(at)) == 3  # grid, channel heatmap, overlay
    _select(at, "Order channels by").set_value("max activation").run()
    assert not at.exception
    layer_select = _select(at, "Layer")
    last = layer_select.options[-1]
    layer_select.set_value(last).run()
    assert not at.exception and len(plotly_charts(at)) == 0  # a vector layer: bar chart, no grid


def _grid_channels(at) -> np.ndarray:
    """Channel numbers shown in the activation grid (the heatmap's customdata, -1 in the gaps)."""
    data = json.loads(plotly_charts(at)[0].proto.spec)["data"][0]["customdata"]
    if isinstance(data, dict):
        shape = [int(n) for n in str(data["shape"]).split(",")]
        data = np.frombuffer(base64.b64decode(data["bdata"]), dtype=data["dtype"]).reshape(shape)
    channels = np.unique(np.asarray(data))
    return channels[channels >= 0]


@pytest.mark.slow
def test_wide_layers_are_shown_a_readable_page_at_a_time():
    """conv4_3 of VGG-16 has 512 maps: 64 at a time, strongest first, the rest on later pages."""
    at = open_page("vgg16", "pages/activations.py")
    assert _select(at, "Order channels by").value == "max activation"
    _select(at, "Layer").set_value("conv4_3").run()
    first = _grid_channels(at)
    assert len(first) == 64
    (paging,) = [n for n in at.number_input if n.label == "Page (of 8)"]
    paging.set_value(2).run()
    second = _grid_channels(at)
    assert len(second) == 64 and not set(first) & set(second)
    assert not at.exception


@pytest.mark.parametrize("model_name", MODELS)
def test_filters_page(model_name):
    at = open_page(model_name, "pages/filters.py")
    assert at.title[0].value == "Filters"
    assert len(plotly_charts(at)) == 2
    assert not at.exception
    # the deeper filter's caption states the colour convention its figure draws (tests/test_figures.py)
    assert any(figures.SIGNED_WORDS in c.value for c in at.caption)


def test_a_network_trained_in_the_session_replaces_the_shipped_one(fashion_untrained):
    at = open_page("fashion_cnn")
    assert "trained on Fashion-MNIST" in at.caption[0].value
    at.session_state["session_model"] = fashion_untrained
    at.run()
    assert not at.exception
    assert any("Showing" in i.value and fashion_untrained.title in i.value for i in at.info)
    key = at.session_state["session_model_key"]
    assert key.startswith("fashion_cnn@") and len(key) > len("fashion_cnn@") + 8
    assert "untrained" in at.caption[0].value  # the session network's weights, not the shipped ones


def test_activation_buttons_fit_half_a_1024_px_column():
    """Issue 21 item 13: the labels were cut ("...look for? Dr..."). Half of a 1024 px screen's main column is
    ~270 px; with the icon and padding that leaves room for about 28 characters of 14 px text."""
    at = open_page("fashion_cnn", "pages/activations.py")
    labels = [at.button(key=k).label for k in ("dream_this_channel", "units_this_channel")]
    assert all(len(label) <= 28 for label in labels), labels
    channel = at.number_input[-1].value
    assert any(m.value == f"**What does channel {channel} look for?**" for m in at.markdown)


def test_activations_close_up_reruns_alone(monkeypatch):
    """The channel and the overlay's opacity rerun the close-up alone (an st.fragment): the grid of up to
    64 maps is not rebuilt for them."""
    at = open_page("fashion_cnn", "pages/activations.py")
    grids: list[int] = []
    real = figures.feature_grid
    monkeypatch.setattr(figures, "feature_grid", lambda *a, **k: grids.append(1) or real(*a, **k))
    channel = next(n for n in at.number_input if n.label == "Channel")
    rerun_fragment(at, channel.set_value(channel.value + 1))
    assert not at.exception and not grids
    assert any(
        f"channel {channel.value}" in json.loads(c.proto.spec)["layout"]["title"]["text"] for c in plotly_charts(at)
    )
