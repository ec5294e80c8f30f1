"""The protocol-level student (benchmarks/protocol.py): what it reads from the server's messages,
and one short tour against a real server."""

from __future__ import annotations

import asyncio

import pytest
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

from benchmarks.protocol import ProtocolError, Student, _state_for, recorded
from tests.conftest import photo, png_bytes

# ---- recorded messages: what the server sends, built the way it builds them --------------


def _new_session(run_id: str, page: str = "page-a") -> bytes:
    msg = ForwardMsg()
    msg.new_session.initialize.session_id = "session-1"
    msg.new_session.main_script_hash = "main"
    msg.new_session.page_script_hash = page
    msg.metadata.run.script_run_id = run_id
    return msg.SerializeToString()


def _selectbox(path: list[int], wid: str, label: str, options: list[str], default: int, raw: str | None = None):
    msg = ForwardMsg()
    msg.metadata.delta_path.extend(path)
    msg.metadata.active_script_hash = "main" if path[0] == 1 else "page-a"
    box = msg.delta.new_element.selectbox
    box.id, box.label, box.default = wid, label, default
    box.options.extend(options)
    if raw is not None:
        box.raw_value, box.set_value = raw, True
    return msg.SerializeToString()


def _finished(run_id: str) -> bytes:
    msg = ForwardMsg()
    msg.script_finished = ForwardMsg.FINISHED_SUCCESSFULLY
    msg.metadata.run.script_run_id = run_id
    return msg.SerializeToString()


def _navigation(current: str) -> bytes:
    msg = ForwardMsg()
    for title, page_hash in (("Page A", "page-a"), ("Page B", "page-b")):
        msg.navigation.app_pages.add(page_name=title, page_script_hash=page_hash)
    msg.navigation.page_script_hash = current
    return msg.SerializeToString()


MODEL_ID = "$$ID-3f2a-model"  # ids as Streamlit makes them: opaque, never written in a test that drives the app
LAYER_ID = "$$ID-91bc-layer"


def _first_run() -> list[bytes]:
    return [
        _new_session("run-1"),
        _navigation("page-a"),
        _selectbox([1, 2], MODEL_ID, "Model", ["VGG-16", "Fashion"], 0, raw="VGG-16"),
        _selectbox([0, 4], LAYER_ID, "Layer", ["conv1", "conv2"], 1),
        _finished("run-1"),
    ]


def test_widgets_are_found_in_the_elements_the_server_sends():
    student = recorded(_first_run())
    model, layer = student.widget("Model"), student.widget("Layer", "selectbox", sidebar=False)
    assert (model.id, model.in_sidebar, model.options) == (MODEL_ID, True, ["VGG-16", "Fashion"])
    assert layer.id == LAYER_ID and not layer.in_sidebar
    # The value a rerun sends: the server's when it set one, else the default option.
    assert student.value(model) == "VGG-16" and student.value(layer) == "conv2"
    assert student.page_title == "Page A" and student.session_id == "session-1"
    with pytest.raises(ProtocolError, match="no option"):
        _state_for(model, "ResNet")
    with pytest.raises(ProtocolError, match="0 widgets labelled 'Colour'"):
        student.widget("Colour")


def test_a_run_drops_what_it_did_not_redraw_and_the_states_of_widgets_gone():
    student = recorded([*_first_run(), _new_session("run-2"), _selectbox([1, 2], MODEL_ID, "Model", ["VGG-16"], 0)])
    assert {w.label for w in student.widgets()} == {"Model", "Layer"}  # run 2 still running
    student = recorded([*_first_run(), _new_session("run-2"), _selectbox([1, 2], MODEL_ID, "Model", ["VGG-16"], 0)])
    student._handle(student._dereference(_finished("run-2")))
    assert [w.label for w in student.widgets()] == ["Model"]
    assert LAYER_ID not in student._values


def test_lost_changes_are_named():
    student = recorded(_first_run())
    model = student.widget("Model")
    chosen = _state_for(model, "Fashion")
    assert student._lost(model, _state_for(model, "VGG-16")) == ""
    # The server drew the widget back with its old value: the change did not take.
    assert student._lost(model, chosen) == "'Model' came back as 'VGG-16', not 'Fashion'"
    # The widget is gone after the run.
    student = recorded([*_first_run(), _new_session("run-2"), _finished("run-2")])
    assert student._lost(model, chosen) == "'Model' is no longer on screen"


def test_cached_messages_are_referenced_by_hash():
    big = ForwardMsg()
    big.ParseFromString(_selectbox([0, 1], LAYER_ID, "Layer", ["conv1"], 0))
    big.hash, big.metadata.cacheable = "h1", True
    ref = ForwardMsg(ref_hash="h1")
    ref.metadata.delta_path.extend([0, 7])
    student = recorded([_new_session("run-1"), big.SerializeToString(), ref.SerializeToString()])
    assert [w.path for w in student.widgets()] == [(0, 1), (0, 7)]
    assert list(student._cache) == ["h1"]  # the next rerun tells the server it has this one
    with pytest.raises(ProtocolError, match="never cached"):
        recorded([ForwardMsg(ref_hash="h2").SerializeToString()])


# ---- a real server --------------------------------------------------------------------------


@pytest.mark.slow
def test_a_student_tours_the_fashion_cnn(app_url):
    """Open, choose the model, upload a photo, visit three pages: every run finishes without
    an error on screen, and the sidebar's widgets come back with the values chosen."""

    async def tour() -> list:
        async with Student(app_url, timeout=300) as s:
            runs = [await s.set_widget("Model", "Fashion-MNIST CNN")]
            runs.append(await s.set_widget("Image", "Upload"))
            runs.append(await s.upload("Upload an image", "shirt.png", png_bytes(photo((64, 64), seed=2))))
            for title in ("Activations", "Filters", "Prediction & architecture"):
                runs.append(await s.switch_page(title))
                assert s.page_title == title
            assert s.value(s.widget("Model")) == "Fashion-MNIST CNN"
            assert s.value(s.widget("Image")) == "Upload"
            captions = " ".join(e.markdown.body for e in s.elements("markdown"))
            assert "Using **shirt.png**" in captions
            return runs

    runs = asyncio.run(tour())
    for run in runs:
        assert run.finished and not run.lost, run
        assert not run.exceptions and not run.error_alerts, run
        assert run.bytes > 0


def _fragment_run(run_id: str, fragment: str) -> list[bytes]:
    start, done = ForwardMsg(), ForwardMsg()
    start.new_session.main_script_hash = "main"
    start.metadata.run.script_run_id = run_id
    start.metadata.run.fragment_ids.append(fragment)
    done.script_finished = ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY
    done.metadata.run.script_run_id = run_id
    done.metadata.run.fragment_ids.append(fragment)
    return [start.SerializeToString(), done.SerializeToString()]


def test_a_timers_fragment_run_does_not_end_the_wait_for_a_full_run():
    student = recorded(_first_run())
    before = len(student._started)
    for frame in _fragment_run("tick-1", "progress-fragment"):  # a run_every tick slips in first
        student._handle(student._dereference(frame))
    assert student._status_since(before, "") is None
    assert student._status_since(before, "progress-fragment") == "ok"  # what a click in that fragment waits for
    student._handle(student._dereference(_new_session("run-2")))
    assert student._status_since(before, "") is None  # started, still running
    student._handle(student._dereference(_finished("run-2")))
    assert student._status_since(before, "") == "ok"
