"""The pure parts of the class benchmark (benchmarks/class_load.py): percentiles, sharing the
server's CPU among the clicks in flight, the per-page table, the widget changes students make."""

from __future__ import annotations

import math
import random

import pytest
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

from benchmarks.class_load import Click, percentile, pick_change, rows, share_cpu
from benchmarks.protocol import Run, Student, recorded


def _oracle(values: list[float], q: float) -> float:
    """The definition: the smallest measured value with at least q % of the values at or below it."""
    return min(v for v in values if sum(x <= v for x in values) >= q / 100 * len(values))


@pytest.mark.parametrize("n", [1, 2, 3, 10, 19, 20, 21, 100])
def test_percentile_is_the_nearest_rank(n):
    rng = random.Random(n)
    values = [rng.uniform(0, 30) for _ in range(n)]
    for q in (50, 95, 99, 100):
        assert percentile(values, q) == _oracle(values, q)
    assert percentile(values, 100) == max(values)


def test_percentile_of_small_samples():
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile(list(range(1, 11)), 95) == 10  # p95 of ten clicks is the slowest one
    assert math.isnan(percentile([], 50))


def test_cpu_goes_to_the_clicks_in_flight():
    samples = [(0.0, 0.0), (1.0, 1.0), (2.0, 1.5), (3.0, 1.5), (4.0, 2.5)]
    # click A runs 0-2, click B 1-2 (overlaps A), nothing 2-3, click C 3-4.
    shares, idle = share_cpu(samples, [(0.0, 2.0), (1.0, 2.0), (3.0, 4.0)])
    assert shares == pytest.approx([1.0 + 0.25, 0.25, 1.0])
    assert idle == pytest.approx(0.0)  # 2-3 consumed nothing
    shares, idle = share_cpu(samples, [(0.0, 0.5)])
    assert shares == pytest.approx([0.5]) and idle == pytest.approx(2.0)
    assert sum(shares) + idle == pytest.approx(samples[-1][1])


def test_rows_group_views_changes_and_setup():
    def click(kind: str, page: str, seconds: float, *, lost: str = "", status: str = "ok", action: str = "x"):
        return Click(0, kind, Run(action, page, seconds, 2_000_000, status=status, lost=lost), 0.0, cpu=0.5)

    table = {
        r.label: r
        for r in rows(
            [
                click("setup", "Prediction", 1.0, action="upload photo.jpg"),
                click("view", "Filters", 1.0),
                click("view", "Filters", 3.0, status="timeout"),
                click("change", "Filters", 2.0, lost="'Layer' came back as 'conv1', not 'conv2'"),
            ]
        )
    }
    assert set(table) == {"upload photo.jpg", "Filters", "Filters: widget change"}
    views = table["Filters"]
    assert (views.clicks, views.p50, views.max, views.errors, views.lost) == (2, 1.0, 3.0, 1, 0)
    assert views.cpu == 0.5 and views.mb == 2.0
    assert table["Filters: widget change"].lost == 1


def _page(*elements: tuple[list[int], str, dict]) -> Student:
    frames = []
    start = ForwardMsg()
    start.new_session.initialize.session_id = "s"
    start.metadata.run.script_run_id = "r1"
    frames.append(start.SerializeToString())
    for path, kind, fields in elements:
        msg = ForwardMsg()
        msg.metadata.delta_path.extend(path)
        widget = getattr(msg.delta.new_element, kind)
        for name, value in fields.items():
            if isinstance(value, list):
                getattr(widget, name).extend(value)
            else:
                setattr(widget, name, value)
        frames.append(msg.SerializeToString())
    return recorded(frames)


def test_students_change_a_widget_of_the_page_never_the_sidebar_or_a_form():
    student = _page(
        ([1, 0], "selectbox", {"id": "m", "label": "Model", "options": ["A", "B"], "default": 0}),
        ([0, 1], "radio", {"id": "f", "label": "In a form", "options": ["x", "y"], "default": 0, "form_id": "f1"}),
        ([0, 2], "selectbox", {"id": "l", "label": "Layer", "options": ["conv1", "conv2", "conv3"], "default": 1}),
    )
    for seed in range(20):
        widget, value = pick_change(student.widgets(), student.value, random.Random(seed))
        assert widget.label == "Layer" and value in ("conv1", "conv3")


def test_slider_changes_stay_on_the_grid():
    stride = {"id": "s", "label": "Stride", "min": 2, "max": 16, "step": 2, "default": [4], "data_type": 0}
    student = _page(([0, 0], "slider", stride))
    seen = set()
    for seed in range(40):
        _, value = pick_change(student.widgets(), student.value, random.Random(seed))
        assert len(value) == 1 and value[0] in range(2, 17, 2) and value != [4]
        seen.add(value[0])
    assert len(seen) > 3
    assert pick_change(_page().widgets(), student.value, random.Random(0)) is None
