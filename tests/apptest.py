"""Run the real app (entry point + sidebar) in Streamlit's AppTest on a chosen page."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

ENTRY = str(Path(__file__).resolve().parent.parent / "streamlit_app.py")


def open_page(model_name: str, page: str | None = None, timeout: float = 180) -> AppTest:
    """The app with `model_name` chosen, the first sample image, and `page` shown."""
    at = AppTest.from_file(ENTRY, default_timeout=timeout)
    # Preset through session state: changing the sidebar's model select inside AppTest
    # swaps sidebar widgets, and AppTest then loses the sidebar from its element tree.
    at.session_state["model_name"] = model_name
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["model_name"] == model_name
    return at


def plotly_charts(at: AppTest) -> list:
    return at.get("plotly_chart")


def payload_bytes(at: AppTest) -> int:
    """Serialized size of every element and block the last run drew: what the server builds, hashes and
    (unless the browser has it cached) sends. Pictures of st.image are files fetched apart: not counted."""

    def size(node) -> int:
        own = node.proto.ByteSize() if getattr(node, "proto", None) is not None else 0
        return own + sum(size(child) for child in getattr(node, "children", {}).values())

    return size(at._tree)
