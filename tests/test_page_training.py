"""AppTest of the live training page: a short run trains, shows its curves and can be adopted."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "training.py")


def test_page_starts_empty() -> None:
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    assert "No runs yet" in at.info[0].value
    assert not any("half a minute" in c.value for c in at.caption)  # a guess the defaults did not keep


@pytest.mark.slow
def test_short_run_from_the_form_to_the_other_pages() -> None:
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.select_slider[1].set_value(1000)  # training images
    at.slider[0].set_value(1)  # epochs
    at.button[0].click().run()  # the form's Train button
    assert not at.exception
    run = at.session_state["training_runs"][0]
    run.join(120)
    assert run.state == "finished"
    at.run()
    assert not at.exception
    assert at.dataframe[0].value["state"][0] == "finished"
    assert len(at.get("plotly_chart")) == 2
    at.button(key="use_session_model").click().run()
    model = at.session_state["session_model"]
    assert model.name == "fashion_cnn" and "trained in this session" in model.weights
