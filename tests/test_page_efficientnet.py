"""Every page with EfficientNet-Lite0 (a graph with residual additions, trained weights offline),
and the app's choice of it when VGG-16's pretrained weights are unavailable."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app.base.errors import WeightsUnavailableError
from app.networks.models import VGG_ENV
from pages import cache
from tests.apptest import ENTRY, open_page, plotly_charts
from tests.conftest import photo, png_bytes

MODEL = "efficientnet_lite0"
PAGES = Path(__file__).resolve().parent.parent / "pages"
IMAGE = png_bytes(photo((96, 64), seed=2))


def _page(page: str, **state) -> AppTest:
    at = AppTest.from_file(str(PAGES / page), default_timeout=300)
    at.session_state["model_name"] = MODEL
    at.session_state["image_bytes"] = IMAGE
    for key, value in state.items():
        at.session_state[key] = value
    return _ok(at.run())


def _ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_prediction_page_names_the_cat_and_shows_the_dag_table():
    at = open_page(MODEL)  # the first sample is Chelsea the cat
    top1 = next(m.value for m in at.markdown if "Top-1" in m.value)
    assert "tiger cat" in top1 or "Egyptian cat" in top1
    assert not at.warning  # trained weights: no banner
    [stage2] = [e for e in at.expander if e.label.startswith("**stage2**")]
    table = stage2.dataframe[0].value.set_index("layer")
    assert table.loc["block2.add", "field"] == "19×19"
    assert table.loc["block2.add", "stride"] == "4"


def test_architecture_table_fits_a_1024_px_projector(lite):
    """Issue 21 item 10: 149 rows (~6,000 px) with wide cells that pushed field and stride off screen."""
    at = open_page(MODEL)
    tables = [df.value for df in at.dataframe]
    assert sum(len(t) for t in tables) == len(lite.layers)  # every layer, in collapsed blocks
    assert len(tables) == len(at.expander) and max(len(t) for t in tables) <= 40
    for t in tables:
        assert list(t.columns) == ["layer", "type", "output", "params", "field", "stride"]
        longest = {c: t[c].astype(str).str.len().max() for c in t.columns}
        assert longest["field"] <= 10 and longest["output"] <= 11 and longest["layer"] <= 22, longest


def test_activations_and_filters_pages(lite):
    at = open_page(MODEL, "pages/activations.py")
    assert len(plotly_charts(at)) == 3
    layer = next(s for s in at.selectbox if s.label == "Layer")
    layer.set_value("stage3.block2.add").run()
    _ok(at)
    rf = lite.layer("stage3.block2.add").rf
    assert any(m.value.startswith("**stage3.block2.add**") and f"{rf}×{rf}" in m.value for m in at.markdown)
    at = open_page(MODEL, "pages/filters.py")
    assert len(plotly_charts(at)) == 2


@pytest.mark.slow
def test_attribution_page_compare_tab():
    at = _page("attribution.py", attr_tab="Compare")
    assert len(plotly_charts(at)) == 4
    assert len(at.selectbox(key=f"attr_target_{MODEL}").options) == 1000


@pytest.mark.slow
def test_occlusion_page_says_it_runs_whole_images():
    at = _page("occlusion.py", **{f"occ_window_{MODEL}": 96})
    at.select_slider(key=f"occ_stride_{MODEL}_96").set_value(64).run()
    _ok(at)
    assert any("runs whole through the network" in c.value for c in at.caption)
    assert len(plotly_charts(at)) == 2


@pytest.mark.slow
def test_feature_space_and_playground_pages():
    at = _page("feature_space.py")
    assert any("Upload at least two images" in i.value for i in at.info)
    at = _page("playground.py")
    assert len(at.dataframe[-1].value) == 10  # top 10 of the 1000 ImageNet classes
    assert any("Mean 0.498 and standard deviation 0.502" in c.value for c in at.caption)


@pytest.fixture
def vgg_offline(monkeypatch, vgg):
    """The shared models as on a machine that cannot download VGG-16's weights (restored afterwards)."""
    open_page(MODEL)  # the shared models are loaded
    monkeypatch.setitem(cache._shared_models(), "vgg16", (vgg, "could not download them (test: offline)"))
    monkeypatch.delenv(VGG_ENV, raising=False)
    monkeypatch.setattr(cache, "fetch_vgg16_weights", _offline)
    monkeypatch.setattr(cache, "_retries", {})
    monkeypatch.setattr(cache, "_retry_errors", {})


def _offline(connect_timeout: float = 5.0) -> None:
    raise WeightsUnavailableError("could not download them (test: offline)")


@pytest.mark.slow
def test_without_vgg_weights_the_offline_model_is_the_default_and_the_banner_points_to_it(vgg_offline):
    at = AppTest.from_file(ENTRY, default_timeout=300)
    _ok(at.run())
    assert at.session_state["model_name"] == MODEL
    assert not at.warning
    at = open_page("vgg16")
    (banner,) = at.warning
    assert "not been trained" in banner.value and "EfficientNet-Lite0 (ImageNet, works offline)" in banner.value


@pytest.mark.slow
def test_dreams_page_every_tab_and_a_feature_visualisation():
    at = _page("dreams.py")
    for tab in ["Class model", "DeepDream", "Style transfer", "Feature visualisation"]:
        at.session_state["dream_tab"] = tab
        _ok(at.run())
    at.select_slider(key="fv_steps").set_value(32)
    at.button[0].click()
    _ok(at.run())
    job = at.session_state["dream_jobs"][f"features:{MODEL}"]
    job.join(300)
    assert job.state == "finished", job.error
    _ok(at.run())
    assert [b.proto.label for b in at.get("download_button")] == ["Download PNG"]
