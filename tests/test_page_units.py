"""AppTest of "What units look for": the Fashion test set (a small stand-in), the bundled photos on
VGG-16 (a few of them), an uploaded collection, and the link from the Activations page."""

from __future__ import annotations

import io
import json
import zipfile
from collections import Counter
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from app.analyses import attribution
from app.analyses import dataset_examples as D
from app.networks.datasets import load_fashion_mnist
from app.pictures import figures
from app.serving.store import store_dir
from models.fashion_cnn import CLASSES
from pages.common import UNIT_LINK
from tests.apptest import open_page, payload_bytes
from tests.conftest import photo, png_bytes

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "units.py")
N = 120  # a small stand-in for the 10,000 test images, so the page test stays quick


@pytest.fixture
def small_sets(monkeypatch, tmp_path):
    images, labels = load_fashion_mnist("test")
    monkeypatch.setattr(D, "load_fashion_mnist", lambda split: (images[:N], labels[:N]))
    monkeypatch.setattr("app.networks.datasets.load_fashion_mnist", lambda split: (images[:N], labels[:N]))
    photos = D.bundled_photos()
    monkeypatch.setattr(D, "bundled_photos", lambda: photos[::20][:6] + photos[1::20][:6])
    monkeypatch.setenv("CNN_LENS_CACHE", str(tmp_path))
    st.cache_resource.clear()
    st.cache_data.clear()
    yield
    st.cache_resource.clear()
    st.cache_data.clear()


def _app(model: str) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=300)
    at.session_state["model_name"] = model
    at.session_state["image_bytes"] = png_bytes(photo((96, 64)))
    return at


def _captions(at: AppTest) -> list[str]:
    return [c for img in at.get("image") for c in img.captions]


@pytest.mark.slow
def test_fashion_unit_grid_your_image_labels_and_overview(small_sets):
    at = _app("fashion_cnn").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "What units look for"
    assert at.selectbox(key="units_layer_fashion_cnn").value == "relu2_2"
    grid = [c for c in _captions(at) if c.startswith("#")]
    assert len(grid) == 9 and all(c.split(" · ")[2] in CLASSES for c in grid)
    assert any("stronger than" in m.value for m in at.markdown)
    assert len(list(store_dir().glob("fashion_units_*.npz"))) == 1  # kept on disk
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert len(charts) == 3  # where in its image, where on your image, the overview
    assert len(charts[-1]["layout"]["annotations"]) == 64  # channels 0-63 of relu2_2

    at.number_input(key="units_channel_fashion_cnn_relu2_2").set_value(5).run()
    at.radio(key="units_which").set_value(3).run()
    at.selectbox(key="units_layer_fashion_cnn").set_value("fc4").run()
    assert not at.exception, [e.value for e in at.exception]
    assert "whole image" in at.caption[0].value or any("whole image" in c.value for c in at.caption)


def test_link_from_another_page_opens_the_unit(small_sets):
    at = _app("fashion_cnn")
    at.session_state[UNIT_LINK] = ("fashion_cnn", "conv2_1", 7)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="units_layer_fashion_cnn").value == "conv2_1"
    assert at.number_input(key="units_channel_fashion_cnn_conv2_1").value == 7
    assert any("conv2_1, channel 7" in h.value for h in at.subheader)


def test_the_activations_page_links_to_its_channel(small_sets):
    at = open_page("fashion_cnn", "pages/activations.py")
    at.number_input(key="act_channel_fashion_cnn_relu1_1").set_value(4).run()
    assert any("What does channel 4 look for?" in m.value for m in at.markdown)
    (button,) = [b for b in at.button if b.label == "Its best dataset patches"]
    button.click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "What units look for"
    assert at.selectbox(key="units_layer_fashion_cnn").value == "relu1_1"
    assert at.number_input(key="units_channel_fashion_cnn_relu1_1").value == 4


@pytest.mark.slow
def test_vgg_bundled_photos_and_an_uploaded_collection(small_sets):
    at = _app("vgg16").run()
    assert not at.exception, [e.value for e in at.exception]
    grid = [c for c in _captions(at) if c.startswith("#")]
    assert len(grid) == 9
    assert {c.split(" · ")[2] for c in grid} <= {p.stem for p in D.PHOTOS.glob("*.jpg")}
    at.selectbox(key="units_layer_vgg16").set_value("conv1_1").run()
    assert not at.exception, [e.value for e in at.exception]

    at.radio(key="units_source_vgg16").set_value("My own collection (upload)").run()
    assert any("Upload at least two images" in i.value for i in at.info)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for j, kind in enumerate(("cats", "dogs")):
            for i in range(3):
                z.writestr(f"{kind}/{i}.png", png_bytes(photo((80 + 10 * i, 60), seed=i + 10 * j)))
    at.file_uploader(key="units_upload").set_value([("class.zip", buf.getvalue(), "application/zip")]).run()
    assert not at.exception, [e.value for e in at.exception]
    grid = [c for c in _captions(at) if c.startswith("#")]
    assert len(grid) == 6 and {c.split(" · ")[2] for c in grid} == {"cats", "dogs"}


def test_fashion_label_chart_only_where_each_label_can_fill_it(monkeypatch, tmp_path):
    """120 test images (about 12 a label): no chart, since no bar could pass 12. 400 (about 40 a label):
    a chart of the best half of the smallest label's share (16 here: 32 pullovers)."""
    images, labels = load_fashion_mnist("test")
    monkeypatch.setenv("CNN_LENS_CACHE", str(tmp_path))
    smallest = min(Counter(labels[:400].tolist()).values())
    assert 20 <= smallest < 40
    for n, top in ((120, None), (400, smallest // 2)):
        monkeypatch.setattr(D, "load_fashion_mnist", lambda split, n=n: (images[:n], labels[:n]))
        monkeypatch.setattr("app.networks.datasets.load_fashion_mnist", lambda split, n=n: (images[:n], labels[:n]))
        st.cache_resource.clear()
        st.cache_data.clear()
        at = _app("fashion_cnn").run()
        assert not at.exception, [e.value for e in at.exception]
        charts = [h.value for h in at.subheader if h.value.startswith("Which true labels")]
        if top is None:
            assert not charts and not at.get("vega_lite_chart")
            assert any("No true label chart" in c.value for c in at.caption)
        else:
            assert charts == [f"Which true labels its {top} best images have"]
            spec = at.get("vega_lite_chart")
            assert len(spec) == 1
    st.cache_resource.clear()
    st.cache_data.clear()


@pytest.mark.slow
def test_efficientnet_opens_on_a_layer_that_fits_shows_photos_and_warns_at_the_border(small_sets):
    at = _app("efficientnet_lite0").run()
    assert not at.exception, [e.value for e in at.exception]
    layer = at.selectbox(key="units_layer_efficientnet_lite0").value
    assert layer == "stage4.block2.expand_relu"  # its 83 px field fits twice in the 224 px image
    assert len([c for c in _captions(at) if c.startswith("#")]) == 9
    assert any("before the clamp" in c.value for c in at.caption)  # a ReLU6 layer
    # the bundled photos: which photos the nine come from, no chart of file names
    assert len([h for h in at.subheader if h.value.startswith("Which photos the 9 come from")]) == 1
    sources = [c for c in _captions(at) if " of 9" in c]
    assert sum(int(c.split(" · ")[1].split(" of ")[0]) for c in sources) == 9
    assert not at.get("vega_lite_chart")
    # an early ReLU6 unit that many photos drive past its ceiling: at 6, ranked by the value before the clamp
    at.selectbox(key="units_layer_efficientnet_lite0").set_value("stage2.block1.expand_relu").run()
    values = [c.split(" · ")[1] for c in _captions(at) if c.startswith("#")]
    cut = [float(v.split("(")[1].rstrip(")")) for v in values if "(" in v]
    assert cut and all(v.startswith("6 (") for v in values if "(" in v) and min(cut) > 6
    assert cut == sorted(cut, reverse=True) and values[: len(cut)] == [v for v in values if "(" in v]
    # the last map sees 851 px: every field reaches past the image, and the page says so
    at.selectbox(key="units_layer_efficientnet_lite0").set_value("head.relu").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("reach past the image's edge" in w.value for w in at.warning)


def test_a_rerun_redraws_nothing_and_the_page_stays_light(small_sets, monkeypatch):
    """Pictures that depend only on the unit are made once for everybody: a rerun with nothing new (a
    click elsewhere, another student on the same unit) neither rebuilds the layer overview nor redraws the
    nine pairs. The page once sent 3.4 MB per run (the overview's pixels as JSON numbers)."""
    at = _app("fashion_cnn").run()
    assert not at.exception, [e.value for e in at.exception]
    assert payload_bytes(at) < 300_000
    calls = Counter()

    def spy(module, name):
        real = getattr(module, name)

        def counted(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)

    spy(figures, "tile_mosaic")
    spy(D, "best_patches")
    spy(attribution, "gradient_image")  # each of the nine pairs' projection
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert calls["tile_mosaic"] == calls["best_patches"] == 0
    assert calls["gradient_image"] <= 1  # your image's pair only
