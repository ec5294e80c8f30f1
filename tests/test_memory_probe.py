"""The server's memory helpers: giving freed memory back (app.serving.trim) and the soak's probe
(app.serving.memory_probe), which reports resident memory, traced allocations and live sessions on request."""

from __future__ import annotations

import json
import time
import tracemalloc

import pytest

from app.serving import memory_probe, trim


class _Session:
    """Stands in for a class whose live instances the probe counts."""


NAME = f"{__name__}._Session"


def test_trim_gives_memory_back_on_glibc_and_its_thread_runs_only_when_asked() -> None:
    assert trim.trim()  # the development and Docker images run glibc
    assert trim.start(0) is None
    thread = trim.start(0.01)
    assert thread is not None and thread.daemon and thread.is_alive()


def test_live_objects_counts_what_is_reachable_and_forgets_the_freed() -> None:
    held = [_Session() for _ in range(3)]
    assert memory_probe.live_objects([NAME, "builtins.NoSuchClass"]) == {NAME: 3, "builtins.NoSuchClass": 0}
    del held[1:]
    assert memory_probe.live_objects([NAME])[NAME] == 1


@pytest.fixture
def traced():
    yield
    tracemalloc.stop()


def test_a_request_file_is_answered_with_a_report_and_a_snapshot(tmp_path, traced) -> None:
    held = _Session()
    memory_probe.start(tmp_path, [NAME], poll=0.05)
    assert tracemalloc.is_tracing()
    (tmp_path / "after-50.request").touch()
    deadline = time.monotonic() + 30
    while (tmp_path / "after-50.request").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    report = json.loads((tmp_path / "after-50.json").read_text())
    assert report["objects"] == {NAME: 1} and report["rss_mb"] > 10 and report["traced_mb"] >= 0
    snapshot = tracemalloc.Snapshot.load(str(tmp_path / "after-50.snapshot"))
    assert snapshot.traceback_limit == memory_probe.FRAMES
    assert held is not None
