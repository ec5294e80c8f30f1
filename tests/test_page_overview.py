"""AppTest of the Network overview page: the diagram for every shipped model, follow a channel, open it."""

from __future__ import annotations

import pytest

from app.pictures import overview as overview_pictures
from tests.apptest import open_page, plotly_charts

PAGE = "pages/overview.py"


@pytest.mark.parametrize("name", ["fashion_cnn", "efficientnet_lite0"])
def test_the_overview_draws_every_stage_and_follows_a_channel(name: str) -> None:
    at = open_page(name, PAGE)
    assert [t.value for t in at.title] == ["Network overview"]
    diagram = plotly_charts(at)[0].proto.spec
    stages = at.selectbox(key=f"ov_layer_{name}").options
    assert len(stages) >= 2 and all(stage in diagram for stage in stages)  # every stage's column is titled
    assert any("is fed most by these channels of" in m.value for m in at.markdown)  # the last stage, by default
    assert any(m.value.startswith("**→ Classes:**") for m in at.markdown)  # the network's end: its top classes

    at.selectbox(key=f"ov_layer_{name}").set_value(stages[1]).run()
    at.number_input(key=f"ov_channel_{name}_{stages[1]}").set_value(2).run()
    assert not at.exception, [e.value for e in at.exception]
    fed = next(m.value for m in at.markdown if "is fed most by" in m.value)
    assert f"{stages[1]}, channel 2" in fed and f"of **{stages[0]}**" in fed

    at.button[0].click().run()  # open it on the Activations page, that layer and channel chosen
    assert not at.exception, [e.value for e in at.exception]
    assert [t.value for t in at.title] == ["Activations"]
    assert at.selectbox(key=f"act_layer_{name}").value == stages[1]
    assert at.number_input(key=f"act_channel_{name}_{stages[1]}").value == 2


def test_the_first_stage_is_fed_by_pixels() -> None:
    at = open_page("fashion_cnn", PAGE)
    first = at.selectbox(key="ov_layer_fashion_cnn").options[0]
    at.selectbox(key="ov_layer_fashion_cnn").set_value(first).run()
    assert any("fed by the image's pixels" in c.value for c in at.caption)


def test_a_rerun_with_nothing_new_reuses_the_diagram(monkeypatch) -> None:
    """Drawing the diagram (~50 tiles, 100 traces) is most of a run: a rerun that changes nothing it shows
    reuses this session's figure; choosing another channel draws it again, framed anew."""
    at = open_page("fashion_cnn", PAGE)
    drawn: list[tuple] = []
    real = overview_pictures.network_figure
    monkeypatch.setattr(overview_pictures, "network_figure", lambda *a, **k: drawn.append(a[2]) or real(*a, **k))
    before = plotly_charts(at)[0].proto.spec
    at.run()
    assert not at.exception and not drawn and plotly_charts(at)[0].proto.spec == before
    layer = at.selectbox(key="ov_layer_fashion_cnn").value
    at.number_input(key=f"ov_channel_fashion_cnn_{layer}").set_value(3).run()
    assert drawn == [(layer, 3)]
