"""Forward passes share a network; only tracing runs alone (app.serving.sharing)."""

from __future__ import annotations

import threading
import time

import torch

from app.analyses.embedding import features
from app.networks.activations import activations
from app.serving import sharing


def test_prediction_does_not_wait_for_a_held_model_lock(fashion_untrained):
    """A student's prediction runs while another analysis holds the model (a gradient pass, a hook)."""
    x = torch.zeros(1, 1, 28, 28)
    expected = fashion_untrained.logits(x)
    features(fashion_untrained, x)  # its graph is built once, under the lock; then reused without it
    done = threading.Event()
    got = {}

    def predict() -> None:
        got["logits"] = fashion_untrained.logits(x)
        got["maps"] = activations(fashion_untrained, x)
        got["features"] = features(fashion_untrained, x)
        done.set()

    with fashion_untrained.lock:
        worker = threading.Thread(target=predict)
        worker.start()
        assert done.wait(30), "a plain forward pass queued behind the model lock"
    worker.join()
    torch.testing.assert_close(got["logits"], expected)


def test_tracing_waits_for_running_passes_and_holds_new_ones_back():
    events: list[str] = []
    inside = threading.Event()
    release = threading.Event()

    def reader(name: str, hold: threading.Event | None) -> None:
        with sharing.forward():
            events.append(f"{name} in")
            if hold is not None:
                inside.set()
                release.wait(10)
            events.append(f"{name} out")

    def writer() -> None:
        with sharing.exclusive():
            events.append("trace")

    first = threading.Thread(target=reader, args=("first", release))
    first.start()
    assert inside.wait(10)
    trace = threading.Thread(target=writer)
    trace.start()
    time.sleep(0.2)  # the trace is now waiting for the first pass
    second = threading.Thread(target=reader, args=("second", None))
    second.start()
    time.sleep(0.2)  # and the second pass waits for the trace
    assert events == ["first in"]
    release.set()
    for t in (first, trace, second):
        t.join(10)
    assert events == ["first in", "first out", "trace", "second in", "second out"]


def test_many_passes_at_once():
    entered = threading.Barrier(4, timeout=10)

    def reader() -> None:
        with sharing.forward():
            entered.wait()  # all four inside together, or the barrier times out

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert not entered.broken
