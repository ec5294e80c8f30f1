"""Live training: it learns, it stops when told, and the concurrency cap holds."""

from __future__ import annotations

import sys
import threading
import time
import types

import pytest
import torch
from torch import nn

from app.analyses import training
from app.analyses.training import Slots, TrainConfig
from tests.conftest import wait_for

TINY = TrainConfig(train_size=512, test_size=200, epochs=2, batch_size=32, width=4, chunk=4)
LONG = TrainConfig(train_size=10_000, test_size=100, epochs=10, batch_size=32, width=4, chunk=2)


@pytest.mark.slow
def test_short_run_lowers_the_loss_and_beats_chance() -> None:
    net, history, outcome = training.train(TINY)
    assert outcome == "finished"
    assert len(history) == 8  # 16 batches per epoch, a point every 4
    assert history[-1].images == 1024 and history[-1].epoch == 2.0
    assert history[-1].train_loss < 0.8 * history[0].train_loss
    assert history[-1].test_accuracy > 0.4  # chance is 0.1
    assert not net.training


def test_without_batch_norm_and_dropout() -> None:
    net = training.build_model(TrainConfig(batch_norm=False, dropout=False, width=4))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert all(m.bias is not None for m in net.modules() if isinstance(m, nn.Conv2d))
    assert all(m.p == 0 for m in net.modules() if isinstance(m, nn.Dropout))
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_huge_learning_rate_is_reported_as_diverged() -> None:
    config = TrainConfig(optimiser="SGD", lr=1e12, batch_norm=False, train_size=256, test_size=50, width=4, chunk=2)
    _, history, outcome = training.train(config)
    assert outcome == "diverged" and len(history) == 1


@pytest.mark.parametrize("isolated", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["thread", "process"])
def test_stop_ends_a_run_cleanly(isolated: bool) -> None:
    run = training.start(LONG, Slots(1), isolated=isolated)
    wait_for(lambda: len(run.history) >= 1)
    run.stop()
    run.join(30)
    assert not run.thread.is_alive()
    assert run.state == "stopped"
    assert run.net is not None and run.progress() < 0.01
    n = len(run.history)
    time.sleep(0.2)
    assert len(run.history) == n  # nothing is appended after stopping


def test_slots_never_exceed_the_limit() -> None:
    slots, lock = Slots(2), threading.Lock()
    inside, peak = 0, 0

    def worker() -> None:
        nonlocal inside, peak
        assert slots.acquire()
        with lock:
            inside += 1
            peak = max(peak, inside)
        time.sleep(0.05)
        with lock:
            inside -= 1
        slots.release()

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert peak == 2 and slots.running == 0


def test_second_run_waits_for_a_free_slot_and_can_be_cancelled() -> None:
    slots = Slots(1)
    first = training.start(LONG, slots, isolated=False)
    wait_for(lambda: first.state == "running")
    second = training.start(TINY, slots, isolated=False)
    time.sleep(0.5)
    assert second.state == "waiting" and slots.running == 1
    second.stop()  # leaving the queue
    second.join(5)
    assert second.state == "stopped" and second.history == []
    third = training.start(
        TrainConfig(train_size=64, test_size=20, epochs=1, batch_size=32, width=4), slots, isolated=False
    )
    time.sleep(0.3)
    assert third.state == "waiting"
    first.stop()
    third.join(60)
    assert first.state == "stopped" and third.state == "finished" and slots.running == 0


def test_a_students_second_run_waits_for_their_first_even_with_a_free_slot() -> None:
    slots = Slots(2)
    first = training.start(LONG, slots, isolated=False, owner="ann")
    wait_for(lambda: first.state == "running")
    second = training.start(TINY, slots, isolated=False, owner="ann")
    time.sleep(0.5)
    assert second.state == "waiting" and slots.running == 1 and slots.position(second) == 1
    first.stop()
    second.join(120)
    assert first.state == "stopped" and second.state == "finished" and slots.running == 0


def test_time_estimate_is_scaled_from_a_measured_run(monkeypatch) -> None:
    """The page once promised "about half a minute" for a run that took 8 s: now it only quotes measurements."""
    monkeypatch.setattr(training, "_pace", {})
    small = TrainConfig(train_size=64, test_size=20, epochs=1, batch_size=32, width=4)
    assert training.estimate_seconds(small) is None  # nothing measured yet: no number to show
    run = training.start(small, Slots(1), isolated=False)
    run.join(60)
    assert run.state == "finished" and run.seconds > 0
    assert training.estimate_seconds(small) == pytest.approx(run.seconds)
    bigger = TrainConfig(train_size=640, test_size=20, epochs=2, batch_size=32, width=4)
    assert training.estimate_seconds(bigger) == pytest.approx(20 * run.seconds)
    assert training.estimate_seconds(TrainConfig(width=8)) is None  # another network shape: not measured


@pytest.mark.slow  # a spawned training process: ~5-10 s to start on busy cores
def test_trained_run_becomes_a_model_the_pages_can_use(monkeypatch, tmp_path) -> None:
    # Streamlit makes the running page script the __main__ module; the training process must not re-run it.
    page = tmp_path / "page.py"
    page.write_text("raise SystemExit(3)\n")
    fake_main = types.ModuleType("__main__")
    fake_main.__file__ = str(page)
    monkeypatch.setitem(sys.modules, "__main__", fake_main)
    run = training.start(TrainConfig(train_size=64, test_size=20, epochs=1, batch_size=32, width=4), Slots(1))
    run.join(120)
    assert run.state == "finished", run.error
    model = training.as_loaded_model(run)
    assert model.name == "fashion_cnn" and "this session" in model.weights
    assert model.layers[-1].kind == "fc" and model.layers[-1].out_shape == (10,)
    x = torch.zeros(1, 1, 28, 28)
    torch.testing.assert_close(model.logits(x, "fp32"), run.net(x))
    with pytest.raises(ValueError):
        training.as_loaded_model(training.Run(TINY))
