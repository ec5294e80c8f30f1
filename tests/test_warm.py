"""`make warm`: it stores exactly what the pages then read, skips what is there, reports bad files.

A teacher's collection made here (a few generated pictures, an unreadable file, an oversized
one) is warmed with EfficientNet-Lite0 (shipped, small) and a few of the bundled photos; then
What units look for and Feature space open on it in AppTest without computing any of it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from app.analyses import dataset_examples as D
from app.analyses import embedding as E
from app.analyses import warm
from app.networks.collections import COLLECTIONS_ENV
from app.networks.datasets import load_fashion_mnist
from app.networks.loaded import LoadedModel
from scripts import warm_cache
from tests.conftest import photo, png_bytes
from tests.test_collections import make_collection

PAGES = Path(__file__).resolve().parent.parent / "pages"
N = 120  # a small stand-in for the 10,000 Fashion-MNIST test images


@pytest.fixture
def shelf(monkeypatch, tmp_path):
    """A collections folder holding "fruit", an empty store, a few bundled photos, a small Fashion test set."""
    make_collection(tmp_path / "shelf" / "fruit")
    monkeypatch.setenv(COLLECTIONS_ENV, str(tmp_path / "shelf"))
    monkeypatch.delenv("CNN_LENS_MODELS", raising=False)
    monkeypatch.setenv("CNN_LENS_CACHE", str(tmp_path / "cache"))
    photos = D.bundled_photos()
    monkeypatch.setattr(D, "bundled_photos", lambda: photos[::40])
    images, labels = load_fashion_mnist("test")
    for module in (D, E):
        monkeypatch.setattr(module, "load_fashion_mnist", lambda split: (images[:N], labels[:N]))
    monkeypatch.setattr("app.networks.datasets.load_fashion_mnist", lambda split: (images[:N], labels[:N]))
    st.cache_resource.clear()
    yield tmp_path / "cache"
    st.cache_resource.clear()


def test_the_plan_covers_every_model_data_set_and_kind(shelf, fashion_untrained: LoadedModel, lite: LoadedModel):
    (fruit,) = warm_cache.load_collections()
    tasks = warm.plan([fashion_untrained, lite], [fruit], warm_cache.bundled_photos)
    listed = [(t.kind, t.model, t.what) for t in tasks]
    assert ("units", "fashion_cnn", "unit table of the Fashion-MNIST test set") in listed
    assert [w for k, m, w in listed if k == "maps" and m == "fashion_cnn"] == [
        "Fashion-MNIST test-set map, t-SNE, perplexity 30",
        "Fashion-MNIST test-set map, PCA",
    ]
    assert {w for k, m, w in listed if m == "efficientnet_lite0" and k != "maps"} == {
        "unit table of the bundled photos (5 crops)",
        "units page's first view of the bundled photos (5 crops)",
        "unit table of the collection 'fruit'",
        "units page's first view of the collection 'fruit'",
    }
    assert [w for k, m, w in listed if m == "efficientnet_lite0" and k == "maps"] == [
        "map of the collection 'fruit', t-SNE, perplexity 30",
        "map of the collection 'fruit', PCA",
    ]
    assert not any("fruit" in w for _, m, w in listed if m == "fashion_cnn")  # 28x28 grey input: no photos
    only = warm.plan([fashion_untrained, lite], [fruit], warm_cache.bundled_photos, ["maps"], E.PERPLEXITIES)
    assert {t.kind for t in only} == {"maps"} and len(only) == 2 * (len(E.PERPLEXITIES) + 1)


@pytest.mark.slow
def test_warm_then_both_pages_open_on_the_collection_without_computing(shelf, monkeypatch, capsys):
    warm_cache.main(["--models", "efficientnet_lite0,fashion_cnn"])
    out = capsys.readouterr().out
    assert "skipped orange/notes.jpg: This file contains text" in out
    assert "skipped ball/huge.jpg: The file is 21.0 MB" in out
    print(out)
    assert out.count(": stored in ") == 10 and "already stored" not in out  # 4 Fashion, 2 photos, 4 fruit
    stored = sorted(p.name.split("_")[0] for p in shelf.iterdir())

    warm_cache.main(["--models", "efficientnet_lite0,fashion_cnn"])  # the second run only reads
    assert capsys.readouterr().out.count("already stored, read in") == 10
    assert sorted(p.name.split("_")[0] for p in shelf.iterdir()) == stored

    def computed(*args, **kwargs):
        raise AssertionError("computed, although `make warm` stored it")

    for module, name in (
        (D, "top_units_table"),
        (D, "_unit_examples"),
        (D, "_best_patches"),
        (E, "tsne_map"),
        (E, "pca_map"),
    ):
        monkeypatch.setattr(module, name, computed)
    vectors = []
    real_vectors = E.collection_vectors
    monkeypatch.setattr(
        E, "collection_vectors", lambda m, images, *a: vectors.append(len(images)) or real_vectors(m, images, *a)
    )
    source = "fruit (teacher's collection)"

    at = _app("units.py")
    at.radio(key="units_source_efficientnet_lite0").set_value(source).run()
    assert not at.exception, [e.value for e in at.exception]
    grid = [c for img in at.get("image") for c in img.captions if c.startswith("#")]
    assert len(grid) == 6 and {c.split(" · ")[2] for c in grid} == {"orange", "ball"}
    assert any("2 file(s) of fruit left out" in e.label for e in at.expander)

    at = _app("feature_space.py")
    at.radio(key="fs_source_efficientnet_lite0").set_value(source).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.get("plotly_chart") and vectors in ([], [1])  # at most the student's own image, never the six


def test_the_fashion_cnn_says_why_it_has_no_collections(shelf):
    at = AppTest.from_file(str(PAGES / "feature_space.py"), default_timeout=240)
    at.session_state["model_name"] = "fashion_cnn"
    at.session_state["image_bytes"] = png_bytes(photo((96, 64)))
    at.run(timeout=240)
    assert not at.exception, [e.value for e in at.exception]
    assert any("collections (fruit) are colour photos" in c.value for c in at.caption)
    assert "fruit (teacher's collection)" not in at.radio(key="fs_source_fashion_cnn").options


def test_a_broken_collections_setting_is_reported_in_the_sidebar(shelf, monkeypatch):
    monkeypatch.setenv(COLLECTIONS_ENV, str(shelf / "no such folder"))
    at = AppTest.from_file(str(PAGES.parent / "streamlit_app.py"), default_timeout=240)
    at.session_state["model_name"] = "fashion_cnn"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("teacher's collections are off" in e.value and "is not a folder" in e.value for e in at.sidebar.error)


def _app(page: str) -> AppTest:
    at = AppTest.from_file(str(PAGES / page), default_timeout=300)
    at.session_state["model_name"] = "efficientnet_lite0"
    at.session_state["image_bytes"] = png_bytes(photo((96, 64)))
    return at.run()
