"""Run the real app (entry point + sidebar) in Streamlit's AppTest on a chosen page."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from streamlit.runtime.scriptrunner_utils.script_requests import ScriptRequests
from streamlit.testing.v1 import AppTest, local_script_runner

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


# The st.fragment drawing each widget (widget id -> fragment id; "" outside any), from every run's deltas,
# and the fragment the next run is to rerun alone (see rerun_fragment).
_fragment_of: dict[str, str] = {}
_fragment_next: list[str] = []


def _track_fragments() -> None:
    """Note which fragment draws each widget, and let a run ask for one fragment alone, as a browser does.

    AppTest always reruns the whole script: each run's runner starts with a full-run request,
    which absorbs any fragment request; the browser sends the fragment's id alone."""
    if getattr(local_script_runner, "_fragments_tracked", False):
        return
    parse = local_script_runner.parse_tree_from_messages

    def noting(messages):
        for msg in messages:
            if msg.WhichOneof("type") == "delta" and msg.delta.WhichOneof("type") == "new_element":
                element = msg.delta.new_element
                widget = getattr(element, element.WhichOneof("type"))
                if "id" in type(widget).DESCRIPTOR.fields_by_name and widget.id:
                    _fragment_of[widget.id] = msg.delta.fragment_id
        return parse(messages)

    request = local_script_runner.LocalScriptRunner.request_rerun

    def fragment_alone(self, rerun_data):
        if _fragment_next:
            self._requests = ScriptRequests()  # without the initial full-run request
            rerun_data = replace(rerun_data, fragment_id=_fragment_next.pop())
        return request(self, rerun_data)

    local_script_runner.parse_tree_from_messages = noting
    local_script_runner.LocalScriptRunner.request_rerun = fragment_alone
    local_script_runner._fragments_tracked = True


def fragment_of(widget) -> str:
    """The id of the st.fragment that drew `widget` in the last run ("" when it is outside any)."""
    return _fragment_of.get(widget.id, "")


def rerun_fragment(at: AppTest, widget) -> AppTest:
    """Rerun only the fragment that holds `widget` (after its value was set), as the browser does.

    AppTest's element tree then holds that fragment's elements only: run `at.run()` to see the page again."""
    fragment = fragment_of(widget)
    assert fragment, f"{widget.label!r} is not inside an st.fragment"
    _fragment_next.append(fragment)
    return at.run()


_track_fragments()
