"""AppTest of the Feature space page: Fashion test-set map (PCA and t-SNE) with neighbours,
and an uploaded .zip collection for VGG-16 coloured by its folders."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from app.analyses import embedding as E
from app.networks.datasets import load_fashion_mnist
from app.serving.store import store_dir
from models.fashion_cnn import CLASSES
from tests.conftest import photo, png_bytes

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "feature_space.py")
N = 200  # a small stand-in for the 10,000 test images, so the page test stays quick


@pytest.fixture
def small_fashion_set(monkeypatch, tmp_path):
    images, labels = load_fashion_mnist("test")
    monkeypatch.setattr(E, "load_fashion_mnist", lambda split: (images[:N], labels[:N]))
    monkeypatch.setattr("app.networks.datasets.load_fashion_mnist", lambda split: (images[:N], labels[:N]))
    monkeypatch.setenv("CNN_LENS_CACHE", str(tmp_path))
    st.cache_resource.clear()
    st.cache_data.clear()
    yield
    st.cache_resource.clear()
    st.cache_data.clear()


def _app(model: str) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=240)
    at.session_state["model_name"] = model
    at.session_state["image_bytes"] = png_bytes(photo((96, 64)))
    return at


def _traces(at: AppTest) -> list[dict]:
    (chart,) = at.get("plotly_chart")
    return json.loads(chart.proto.spec)["data"]


def _values(values) -> list[float]:
    """A Plotly array (plain list, or base64-packed typed array) as floats."""
    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).astype(float).tolist()
    return [float(v) for v in values]


def _count(values) -> int:
    """Number of values in a Plotly array (plain list, or base64-packed typed array)."""
    if isinstance(values, dict):
        return len(np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]))
    return len(values)


def test_fashion_map_pca_then_tsne_with_neighbours(small_fashion_set):
    at = _app("fashion_cnn")
    at.session_state["fs_method"] = "pca"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Feature space"
    traces = _traces(at)
    assert traces[-1]["name"] == "your image" and _count(traces[-1]["x"]) == 1
    assert sum(_count(t["x"]) for t in traces[:-1]) == N
    assert {t["type"] for t in traces} == {"scattergl"}
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert "PCA: the two axes keep" in spec["layout"]["title"]["text"]
    assert len(at.get("image")) == 2 * 8  # feature-space and pixel-space neighbours, k = 8
    captions = [c for img in at.get("image") for c in img.captions]
    assert all(" · d=" in c for c in captions)
    labels = {c.split(" · ")[0] for c in captions}
    assert labels <= set(CLASSES)
    # issue 21 item 9: one section above the other, four thumbnails to a row of the whole column (side by
    # side, a 1024 px projector gave 55 px thumbnails whose captions broke over three lines)
    rows = [b for b in at.main.children.values() if getattr(b, "type", "") == "flex_container" and b.get("image")]
    assert len(rows) == 4 and all(len(row.children) == 4 for row in rows)

    # a click on the map (the chart's selection state, as the browser sends it)
    (chart_key,) = [k for k in at.session_state if str(k).startswith("fs_map_")]
    point = {"curve_number": 0, "point_index": 0, "customdata": 7, "x": 0.0, "y": 0.0}
    at.session_state[chart_key] = {"selection": {"points": [point], "point_indices": [0], "box": [], "lasso": []}}
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    _, labels = load_fashion_mnist("test")
    shown = [m.value for m in at.markdown if m.value.startswith("**test image #7**")]
    assert shown and f"true label: **{CLASSES[labels[7]]}**" in shown[0] and "the network predicts" in shown[0]

    at.slider(key="fs_k").set_value(3).run()
    at.selectbox(key="fs_metric").set_value("cosine").run()
    assert not at.exception and len(at.get("image")) == 2 * 3 + 1  # neighbours + the clicked image

    at.radio(key="fs_method").set_value("tsne").run()
    at.select_slider(key="fs_perplexity").set_value(10).run()
    assert not at.exception, [e.value for e in at.exception]
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert spec["layout"]["title"]["text"].startswith("t-SNE (perplexity 10)")
    assert len(list(Path(store_dir()).glob("*.pkl"))) == 3  # PCA, t-SNE at 30 and at 10, kept on disk


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


@pytest.mark.slow
def test_vgg_collection_is_mapped_and_coloured_by_folder(small_fashion_set):
    at = _app("vgg16").run()
    assert not at.exception
    assert next(r.options for r in at.radio if r.label == "Data set") == ["My own collection (upload)"]
    assert any("Upload at least two images" in i.value for i in at.info)
    files = {
        f"{kind}/{i}.png": png_bytes(photo((80 + 10 * i, 60), seed=i + 10 * j))
        for j, kind in enumerate(("cats", "dogs"))
        for i in range(4)
    }
    files["notes.txt"] = b"not an image"
    at.file_uploader(key="fs_upload").set_value([("class.zip", _zip(files), "application/zip")]).run()
    at.radio(key="fs_method").set_value("tsne").run()
    assert not at.exception, [e.value for e in at.exception]
    traces = _traces(at)
    assert sorted(t["name"] for t in traces[:-1]) == ["cats", "dogs"]
    assert sum(_count(t["x"]) for t in traces[:-1]) == 8
    assert any("left out" in e.label for e in at.expander)
    assert len(at.get("image")) == 2 * 8


def test_own_collection_title_and_the_query_as_its_own_neighbour(small_fashion_set):
    """A small collection caps the perplexity (the title says so, in the slider's terms), and the user's
    image, when it is in the collection, is its own nearest neighbour at distance 0 (one computation)."""
    mine = png_bytes(photo((700, 500), seed=3))  # larger than the collection's 512 px thumbnails
    at = _app("fashion_cnn")
    at.session_state["image_bytes"] = mine
    at.session_state["fs_method"] = "tsne"
    at.run()
    at.radio(key="fs_source_fashion_cnn").set_value("My own collection (upload)").run()
    files = [("mine.png", mine, "image/png")]
    files += [(f"{i}.png", png_bytes(photo((90, 70), seed=10 + i)), "image/png") for i in range(5)]
    at.file_uploader(key="fs_upload").set_value(files).run()
    assert not at.exception, [e.value for e in at.exception]
    title = json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]["title"]["text"]
    assert "1.66667" not in title and "perplexity 1.67" in title and "30" in title
    nearest_in_features = at.get("image")[0].captions[0]
    assert nearest_in_features.endswith("d=0"), nearest_in_features


def test_a_query_outside_the_collection_is_at_distance_0_from_its_copy(small_fashion_set):
    """The user's image is not in the collection, but a copy of it is (other bytes, same pixels): the query
    is prepared and computed as the collection's members are, so the copy is its nearest neighbour at 0
    in both spaces. Before, the query went through the Fashion photo conversion at its own size."""
    picture = photo((700, 500), seed=3)
    buf = io.BytesIO()
    picture.save(buf, format="PNG", compress_level=1)
    at = _app("fashion_cnn")
    at.session_state["image_bytes"] = buf.getvalue()
    at.run()
    at.radio(key="fs_source_fashion_cnn").set_value("My own collection (upload)").run()
    files = [(f"{i}.png", png_bytes(photo((90, 70), seed=10 + i)), "image/png") for i in range(5)]
    files.insert(3, ("copy.png", png_bytes(picture), "image/png"))
    at.file_uploader(key="fs_upload").set_value(files).run()
    assert not at.exception, [e.value for e in at.exception]
    images = at.get("image")  # all 6 in feature space, then all 6 in pixel space
    assert len(images) == 12
    feature_nearest, pixel_nearest = images[0], images[6]
    assert feature_nearest.captions[0].endswith("d=0"), feature_nearest.captions[0]
    assert pixel_nearest.captions[0].endswith("d=0"), pixel_nearest.captions[0]
    assert any("is part of this collection" in c.value for c in at.caption)
    traces = _traces(at)  # the star sits on its copy: the same vector, the same place
    star = (traces[-1]["x"][0], traces[-1]["y"][0])
    assert any(star in zip(_values(t["x"]), _values(t["y"]), strict=True) for t in traces[:-1])


def test_a_long_map_asks_first_and_says_how_long(small_fashion_set, monkeypatch):
    """A new t-SNE of 10,000 points costs about half a minute: the page shows the estimate and waits for a click."""
    monkeypatch.setattr(E, "estimate_seconds", lambda n, method: 30.0 if method == "tsne" else 0.01)
    at = _app("fashion_cnn")
    at.session_state["fs_method"] = "tsne"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("takes about 30 s" in w.value for w in at.warning)
    assert not at.get("plotly_chart")
    at.button(key="fs_start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.get("plotly_chart")) == 1
    at.select_slider(key="fs_perplexity").set_value(10).run()  # another perplexity: asks again
    assert not at.get("plotly_chart") and any("perplexity 10" in w.value for w in at.warning)
    at.select_slider(key="fs_perplexity").set_value(30).run()  # the one already computed: no question
    assert len(at.get("plotly_chart")) == 1
