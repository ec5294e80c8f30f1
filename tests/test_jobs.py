"""The heavy-work queue: the limit holds, waiting jobs know their place, cancel leaves nothing behind."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest
import torch

from app.base.errors import Cancelled, LensError
from app.serving import jobs
from app.serving.jobs import Job, Slots
from tests.conftest import wait_for


def _blocking(release: threading.Event, steps: int = 1000):
    """Work that reports progress until `release` is set (or it is cancelled), then returns its step count."""

    def work(job: Job) -> int:
        for i in range(steps):
            job.report(i + 1, steps)
            if release.wait(0.01):
                return i + 1
        return steps

    return work


def test_slots_run_in_arrival_order_and_know_their_place() -> None:
    slots = Slots(1)
    assert slots.acquire()
    order: list[str] = []
    tickets = {name: object() for name in "abc"}

    def wait(name: str) -> None:
        assert slots.acquire(ticket=tickets[name])
        order.append(name)
        slots.release()

    threads = []
    for name in "abc":
        threads.append(threading.Thread(target=wait, args=(name,)))
        threads[-1].start()
        wait_for(lambda n=name: slots.position(tickets[n]) is not None)
    assert [slots.position(tickets[n]) for n in "abc"] == [1, 2, 3] and slots.waiting == 3
    slots.release()
    for t in threads:
        t.join(10)
    assert order == ["a", "b", "c"] and slots.running == 0 and slots.waiting == 0
    assert slots.position(tickets["a"]) is None


def test_a_stopped_waiter_leaves_the_queue() -> None:
    slots, stop = Slots(1), threading.Event()
    assert slots.acquire()
    result: list[bool] = []
    t = threading.Thread(target=lambda: result.append(slots.acquire(stop, poll=0.01)))
    t.start()
    wait_for(lambda: slots.waiting == 1)
    stop.set()
    t.join(5)
    assert result == [False] and slots.waiting == 0 and slots.running == 1
    slots.release()
    assert slots.running == 0


def test_never_more_than_the_limit_at_once() -> None:
    slots = Slots(2)
    inside, peak, lock = 0, 0, threading.Lock()

    def work(job: Job) -> None:
        nonlocal inside, peak
        with lock:
            inside += 1
            peak = max(peak, inside)
        time.sleep(0.05)
        with lock:
            inside -= 1

    submitted = [jobs.submit(work, f"job {i}", slots) for i in range(6)]
    for job in submitted:
        job.join(10)
    assert peak == 2 and all(j.state == "finished" for j in submitted) and slots.running == 0


def test_a_job_reports_progress_and_its_result() -> None:
    slots = Slots(1)

    def work(job: Job) -> str:
        for i in range(4):
            job.report(i + 1, 4)
            job.show(f"preview {i}")
        return "done"

    job = jobs.submit(work, "four steps", slots)
    job.join(10)
    assert job.state == "finished" and job.result == "done"
    assert (job.done, job.total, job.fraction(), job.preview) == (4, 4, 1.0, "preview 3")
    assert job.error is None and job.seconds >= 0 and job.eta() is None and not job.active


def test_cancelling_a_running_job_stops_it_and_frees_the_slot() -> None:
    slots, release = Slots(1), threading.Event()
    job = jobs.submit(_blocking(release), "long", slots)
    wait_for(lambda: job.done >= 3)
    assert job.state == "running" and job.active and job.eta() is not None and job.position() is None
    job.cancel()
    job.join(10)
    assert job.state == "cancelled" and job.result is None and slots.running == 0


def test_a_waiting_job_shows_its_place_and_can_leave_the_queue() -> None:
    slots, release = Slots(1), threading.Event()
    first = jobs.submit(_blocking(release), "first", slots)
    wait_for(lambda: first.state == "running")
    second = jobs.submit(_blocking(release), "second", slots)
    third = jobs.submit(_blocking(release), "third", slots)
    wait_for(lambda: third.position() == 2)
    assert second.position() == 1 and second.state == "waiting"
    second.cancel()
    second.join(5)
    assert second.state == "cancelled" and second.done == 0
    wait_for(lambda: third.position() == 1)
    release.set()
    third.join(10)
    assert first.state == "finished" and third.state == "finished" and slots.running == 0


def test_a_submitted_job_has_its_place_before_its_thread_has_started(monkeypatch) -> None:
    slots, release = Slots(1), threading.Event()
    first = jobs.submit(_blocking(release), "first", slots)
    wait_for(lambda: first.state == "running")
    monkeypatch.setattr(jobs, "background_thread", lambda: time.sleep(0.5))  # a slow thread start
    second = jobs.submit(_blocking(release), "second", slots)
    assert second.state == "waiting" and second.position() == 1  # what the page draws right after submit
    release.set()
    second.join(10)
    assert second.state == "finished" and slots.running == 0 and slots.waiting == 0


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (LensError("Your picture is too small."), "Your picture is too small."),
        (RuntimeError("boom"), "RuntimeError: boom"),
    ],
)
def test_failures_are_reported_not_lost(error: Exception, message: str) -> None:
    slots = Slots(1)

    def work(job: Job) -> None:
        raise error

    job = jobs.submit(work, "fails", slots)
    job.join(10)
    assert job.state == "failed" and job.error == message and slots.running == 0


def test_report_raises_cancelled_once_cancelled() -> None:
    job: Job = Job("direct", Slots(1))
    job.report(1, 2)
    job.cancel()
    with pytest.raises(Cancelled):
        job.report(2, 2)


def test_identical_requests_share_one_job_until_everyone_cancels() -> None:
    slots, release, runs = Slots(2), threading.Event(), []

    def work(job: Job) -> int:
        runs.append(1)
        return _blocking(release)(job)

    key = ("class model", "fashion_cnn", 5, 256, 0)
    first = jobs.submit(work, "a", slots, key=key)
    second = jobs.submit(work, "b", slots, key=key)
    other = jobs.submit(work, "c", slots, key=(*key[:-1], 1))  # another seed: its own run
    assert second is first and other is not first
    wait_for(lambda: first.done >= 2 and other.done >= 2)
    first.cancel()  # one of the two watchers leaves: the run goes on for the other
    time.sleep(0.1)
    assert first.state == "running"
    second.cancel()
    first.join(10)
    assert first.state == "cancelled"
    third = jobs.submit(work, "d", slots, key=key)  # a cancelled run is not handed out again
    assert third is not first
    release.set()
    third.join(10)
    other.join(10)
    assert third.state == "finished" and len(runs) == 3
    assert jobs.submit(work, "e", slots, key=key) is third  # a finished run is handed out at once
    assert len(runs) == 3


def test_a_job_nobody_watches_any_more_cancels_itself_running_or_queued() -> None:
    # the student's page touches the job while it is open; then the tab closes and the touches stop
    slots, release = Slots(1), threading.Event()
    watched = jobs.submit(_blocking(release), "watched", slots, abandon_after=0.3)
    queued = jobs.submit(_blocking(release), "queued", slots, abandon_after=0.3)
    end = time.monotonic() + 1.0
    while time.monotonic() < end:  # a second of heartbeats, longer than abandon_after: both stay alive
        watched.touch()
        queued.touch()
        time.sleep(0.05)
    assert watched.state == "running" and queued.state == "waiting" and queued.position() == 1
    # the queued job's student leaves first: it leaves the queue without ever running
    end = time.monotonic() + 0.6
    while time.monotonic() < end:
        watched.touch()
        last_touch = time.monotonic()
        time.sleep(0.05)
    queued.join(5)
    assert queued.state == "cancelled" and queued.abandoned and queued.done == 0
    watched.join(10)  # now nobody watches the running one either
    assert watched.state == "cancelled" and watched.abandoned and slots.running == 0
    assert 0.3 <= time.monotonic() - last_touch < 5
    assert not release.is_set()  # it stopped by itself, not because its work ended


def test_without_abandon_after_a_job_runs_unwatched() -> None:
    slots, release = Slots(1), threading.Event()
    job = jobs.submit(_blocking(release), "unwatched", slots)
    time.sleep(0.5)
    assert job.state == "running" and not job.abandoned
    release.set()
    job.join(10)
    assert job.state == "finished"


def test_progress_words_before_the_first_step_do_not_say_step_0_of_0() -> None:
    """Issue 21 item 7: the Dreams bar read "Step 0 of 0" until the first step was done."""
    job: Job[int] = Job("dream", Slots(1), state="running", started=time.perf_counter())
    assert "0 of 0" not in job.progress_text() and job.progress_text().startswith("Starting")
    job.report(3, 64)
    assert job.progress_text().startswith("Step 3 of 64 · about ")


def _run_until_released(release: threading.Event):
    def work(job: Job) -> str:
        job.report(1, 2)
        release.wait(60)
        return "done"

    return work


def test_a_job_runs_in_the_background_without_slowing_the_page_threads() -> None:
    """One PyTorch thread and a lower OS priority inside a job; threads started afterwards still get all cores."""
    seen: dict[str, tuple[int, int]] = {}

    def priority() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def work(job: Job) -> None:
        seen["job"] = (torch.get_num_threads(), priority())

    job = jobs.submit(work, "inside", Slots(1))
    job.join(10)
    assert job.state == "finished"
    page = threading.Thread(target=lambda: seen.setdefault("page", (torch.get_num_threads(), priority())))
    page.start()
    page.join(10)
    assert seen["job"][0] == 1 and seen["page"][0] == jobs._DEFAULT_THREADS == torch.get_num_threads()
    if sys.platform.startswith("linux"):
        assert seen["job"][1] >= jobs.BACKGROUND_NICE and seen["page"][1] == priority() < jobs.BACKGROUND_NICE


def test_a_student_has_one_job_running_and_one_waiting_and_a_third_is_refused() -> None:
    slots, release = Slots(3), threading.Event()
    first = jobs.submit(_run_until_released(release), "first dream", slots, owner="ann")
    second = jobs.submit(_run_until_released(release), "second dream", slots, owner="ann")
    other = jobs.submit(_run_until_released(release), "bob's dream", slots, owner="bob")
    wait_for(lambda: first.state == "running" and other.state == "running")
    time.sleep(0.3)  # a free slot, yet Ann's second job waits for her first
    assert second.state == "waiting" and second.position() == 1 and slots.running == 2
    with pytest.raises(jobs.TooManyJobs) as refused:
        jobs.submit(_run_until_released(release), "third dream", slots, owner="ann")
    assert refused.value.jobs == [first, second] and "“second dream” (waiting)" in str(refused.value)
    assert jobs.active_jobs("ann") == [first, second]
    second.cancel("ann")  # what the page's "cancel the waiting one" button does
    second.join(5)
    assert second.state == "cancelled"
    third = jobs.submit(_run_until_released(release), "third dream", slots, owner="ann")
    assert jobs.active_jobs("ann") == [first, third]
    release.set()
    for job in (first, third, other):
        job.join(10)
        assert job.state == "finished"
    assert jobs.active_jobs("ann") == [] and slots.running == 0


def test_the_queue_takes_students_in_turn_not_first_come() -> None:
    slots, release, gate = Slots(1), threading.Event(), threading.Event()
    started: list[str] = []

    def work(name: str):
        def run(job: Job) -> None:
            started.append(name)
            gate.wait(60)

        return run

    blocker = jobs.submit(_run_until_released(release), "a teacher's job", slots)
    wait_for(lambda: blocker.state == "running")
    queued = {}
    for name, owner in [("ann 1", "ann"), ("ann 2", "ann"), ("bob 1", "bob"), ("cat 1", "cat")]:
        queued[name] = jobs.submit(work(name), name, slots, owner=owner)
        wait_for(lambda n=name: queued[n].position() is not None)
    assert {name: job.position() for name, job in queued.items()} == {"ann 1": 1, "bob 1": 2, "cat 1": 3, "ann 2": 4}
    gate.set()
    release.set()
    for job in queued.values():
        job.join(10)
    assert started == ["ann 1", "bob 1", "cat 1", "ann 2"] and slots.running == 0


def test_thirty_students_asking_for_the_same_dream_start_one_run() -> None:
    slots, release, runs = Slots(2), threading.Event(), []

    def work(job: Job) -> str:
        runs.append(1)
        return _run_until_released(release)(job)

    key = ("features", "vgg16", "relu4_2", 7, 128, 128, 0)
    asked = [jobs.submit(work, "relu4_2, channel 7", slots, key=key, owner=f"student {i}") for i in range(30)]
    assert all(job is asked[0] for job in asked)
    for i in range(29):  # all but the last student leave: the run goes on for the one still watching
        asked[0].cancel(f"student {i}")
    assert not asked[0]._cancel.is_set()
    release.set()
    asked[0].join(10)
    assert asked[0].state == "finished" and len(runs) == 1
    # a student at their limit still gets a finished shared result at once
    busy = [jobs.submit(_blocking(threading.Event()), f"mine {i}", slots, owner="busy") for i in range(2)]
    assert jobs.submit(work, "again", slots, key=key, owner="busy") is asked[0] and len(runs) == 1
    for job in busy:
        job.cancel("busy")


def test_a_stored_result_is_a_finished_job() -> None:
    job = jobs.finished("a stored dream", "relu4_2, channel 7", seconds=12.5)
    assert job.state == "finished" and job.result == "a stored dream" and not job.active and job.seconds == 12.5
