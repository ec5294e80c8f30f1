"""AppTest of the Sanity checks and Models side by side pages, for the Fashion CNN and EfficientNet-Lite0."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from models.fashion_cnn import CLASSES
from tests.conftest import photo, png_bytes

PAGES = Path(__file__).resolve().parent.parent / "pages"
IMAGE = png_bytes(photo((96, 64), seed=2))


def _app(page: str, model: str, **state) -> AppTest:
    at = AppTest.from_file(str(PAGES / page), default_timeout=300)
    at.session_state["model_name"] = model
    at.session_state["image_bytes"] = IMAGE
    for k, v in state.items():
        at.session_state[k] = v
    return _ok(at.run())


def _ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def _finish_sanity(at: AppTest) -> AppTest:
    """Press the start button if the page asks first, wait for the queued job, and rerun for the result."""
    start = [b for b in at.button if b.key == "sanity_start"]
    if start:
        _ok(start[0].click().run())
    _, job = at.session_state["queued_analyses"]["sanity"]
    deadline = time.monotonic() + 600
    while job.active and time.monotonic() < deadline:
        job.touch()  # the open page's heartbeat (its fragment reruns): a job nobody watches stops after a minute
        job.join(timeout=1)
    assert job.state == "finished", (job.state, job.error)
    return _ok(at.run())


@pytest.mark.parametrize(("model", "depth", "stages"), [("fashion_cnn", None, 5), ("efficientnet_lite0", "head", 3)])
def test_sanity_page_runs_the_check_and_shows_chart_grid_and_meaning(model: str, depth: str | None, stages: int):
    state = {f"sanity_depth_{model}": depth} if depth else {}
    at = _finish_sanity(_app("sanity.py", model, **state))
    assert at.title[0].value == "Sanity checks: do the maps depend on the network?"
    chart, grid = at.get("plotly_chart")
    lines = json.loads(chart.proto.spec)["data"]
    assert [line["name"] for line in lines] == ["gradient", "guided backprop", "Grad-CAM"]
    assert all(len(line["x"]) == stages and line["y"][0] == pytest.approx(1.0) for line in lines)
    assert json.loads(grid.proto.spec)["data"][0]["type"] == "image"
    assert any("What it means" in m.value for m in at.markdown)
    # a second visit is served from the cache: no question, no job
    again = _app("sanity.py", model, **state)
    assert not [b for b in again.button if b.key == "sanity_start"]
    assert len(again.get("plotly_chart")) == 2


@pytest.mark.parametrize("model", ["fashion_cnn", "efficientnet_lite0"])
def test_side_by_side_shows_every_shipped_model_on_one_scale(model: str):
    at = _app("compare.py", model)
    assert at.title[0].value == "Models side by side"
    chosen = at.multiselect(key="compare_models").value
    assert chosen[0] == model and sorted(chosen) == ["efficientnet_lite0", "fashion_cnn", "vgg16"]
    top5 = [m.value for m in at.markdown if m.value.startswith("**Top-5**")]
    assert len(top5) == 3 and all(t.count("%**") == 5 for t in top5)
    fashion_top5 = top5[chosen.index("fashion_cnn")]
    assert sum(f" {c}: " in fashion_top5 for c in CLASSES) == 5  # each column shows its own network's classes
    charts = at.get("plotly_chart")
    assert len(charts) == 1
    maps = json.loads(charts[-1].proto.spec)
    assert [trace["type"] for trace in maps["data"]] == ["heatmap"] * 3
    assert all(trace["coloraxis"] == "coloraxis" for trace in maps["data"])  # one shared colour scale
    assert maps["layout"]["coloraxis"]["cmin"] == 0
    # another method, and only two networks
    at.radio(key="compare_method").set_value("Grad-CAM")
    at.multiselect(key="compare_models").set_value(["fashion_cnn", "efficientnet_lite0"])
    _ok(at.run())
    maps = json.loads(at.get("plotly_chart")[-1].proto.spec)
    assert len(maps["data"]) == 2
    assert "Grad-CAM" in at.subheader[0].value


def test_side_by_side_needs_two_networks():
    at = _app("compare.py", "fashion_cnn", compare_models=["fashion_cnn"])
    assert any("at least two" in i.value for i in at.info)
    assert not at.get("plotly_chart")
