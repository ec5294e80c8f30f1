"""Run the real app (entry point + sidebar) in Streamlit's AppTest on a chosen page."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

ENTRY = str(Path(__file__).resolve().parent.parent / "streamlit_app.py")


def open_page(model_name: str, page: str | None = None, timeout: float = 180) -> AppTest:
    """The app with `model_name` chosen, the first sample image, and `page` shown."""
    at = AppTest.from_file(ENTRY, default_timeout=timeout)
    at.run()
    at.selectbox(key="model_name").set_value(model_name).run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def plotly_charts(at: AppTest) -> list:
    return at.get("plotly_chart")
