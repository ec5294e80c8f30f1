"""Heavy work shared fairly: a per-process limit on simultaneous jobs, a fair queue with positions, cancel.

A class of students shares one server with a few cores. If ten of them press
"Dream" at once and all ten optimisations start, each gets a tenth of the cores,
every page (theirs and everyone else's) crawls, and nobody finishes soon. So
heavy work goes through `Slots`: at most `limit` jobs run at once and the others
wait, each able to see its place in the queue. One pool, `HEAVY`, is shared by
everything heavy in the process (dreams, queued analyses, live training);
`$CNN_LENS_MAX_JOBS` sets its size (default: one per core; the older
`$CNN_LENS_MAX_TRAININGS` is still read).

The queue is fair across students, not first come first served: a job may name
its `owner` (a student), and the next job to start is the oldest one of the
student with the fewest jobs running or queued ahead of it, so one student who
queues several jobs does not hold back everyone else (round robin by student).
A student has at most one job running (the others wait even when a slot is free)
and at most `PER_STUDENT` jobs waiting or running at all: `submit` refuses a
further one with `TooManyJobs`, which names the jobs that student could cancel.

`submit` runs a function in a background thread once it gets a slot and returns a
`Job` at once; a page polls the job (state, progress, estimate, latest preview)
and can cancel it. Deterministic work can be given a `key`: a class told "everyone
make the class model of Sandal" then runs it once, and every student who asks for
the same thing watches that one job (or gets its finished result at once); the job
stops only when every watcher has cancelled. A student who closes the browser tab
cancels nothing, so a job can also be given `abandon_after`: the page that shows
it calls `touch()` while open (a heartbeat), and a job nobody has touched for that
long cancels itself, running or still queued, and frees its slot for someone who
is there. The one progress convention of the project applies:
`progress(done, total)` is called as work advances, and cancelling makes that
call raise `app.base.errors.Cancelled`, which unwinds the work (the slot is released
in a `finally`). Work must therefore keep no state outside its own objects
(the dreams hold the shared model's lock for one step at a time, never across a
progress call).

A job's thread works in the background (`background_thread`): one PyTorch thread
and a lower OS priority. Both matter on a busy server. With two OpenMP threads per
job, every one of the thousands of small operations of an EfficientNet step ends
in a barrier that waits until both threads get a core; with other work on the
machine and OpenMP's default spinning wait a step took 1-4 s instead of 0.05-0.2 s
(with OMP_WAIT_POLICY=PASSIVE, as `make run` and the image set, one and two threads
were alike). And at a lower priority the jobs take the cores
only when the students' page views leave them free.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

import torch

from app.base.errors import Cancelled, LensError
from app.serving.lru import ResultStore

T = TypeVar("T")
JobState = Literal["waiting", "running", "finished", "cancelled", "failed"]


class Slots:
    """At most `limit` holders at once; the others wait in a fair order and know their place.

    Waiting tickets may name an owner (a student). The order is round robin by
    student: the next ticket is the oldest one of the student whose last start is
    longest ago (a student not served yet first), so a student's second job waits
    behind every other student's next one. An owner's ticket never starts while that
    owner holds a slot. A ticket without an owner counts as a student of its own.
    """

    # Owners whose last start is remembered; the oldest are forgotten beyond this (they then go first once).
    REMEMBERED = 1024

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._cond = threading.Condition()
        self._queue: list[tuple[object, Hashable | None]] = []  # waiting (ticket, owner), oldest first
        self._held: dict[int, Hashable] = {}  # id(ticket) -> owner, for slots held by an owner's ticket
        self._owners_running: Counter[Hashable] = Counter()
        self._last_start: dict[Hashable, int] = {}  # owner -> the start count when they last started
        self._starts = 0
        self.running = 0

    def _order(self) -> list[tuple[object, Hashable | None]]:
        """The waiting tickets in the order they will start: repeatedly, the oldest ticket of the owner
        served longest ago (ties: the owner whose oldest ticket is oldest)."""
        pending: dict[object, list[tuple[object, Hashable | None]]] = {}
        for ticket, owner in self._queue:
            pending.setdefault(ticket if owner is None else ("owner", owner), []).append((ticket, owner))
        last = {who: self._last_start.get(tickets[0][1], -1) for who, tickets in pending.items()}
        arrival = {ticket: i for i, (ticket, _) in enumerate(self._queue)}
        order, clock = [], self._starts
        while pending:
            who = min(pending, key=lambda w: (last[w], arrival[pending[w][0][0]]))
            order.append(pending[who].pop(0))
            last[who], clock = clock, clock + 1
            if not pending[who]:
                del pending[who]
        return order

    def _next(self) -> object | None:
        """The ticket that starts when a slot is free: the first in order whose owner holds no slot."""
        for ticket, owner in self._order():
            if owner is None or not self._owners_running[owner]:
                return ticket
        return None

    def acquire(
        self,
        stop: threading.Event | Callable[[], bool] | None = None,
        poll: float = 0.2,
        ticket: object | None = None,
        owner: Hashable | None = None,
    ) -> bool:
        """Wait for a free slot (in the fair order); False if `stop` was set (or returned True) while waiting.

        ticket: what `position` is asked about while waiting (default: an anonymous one); pass the
        same ticket to `release` when an owner is given. owner: the student it is for.
        """
        ticket = object() if ticket is None else ticket
        stopped = stop.is_set if isinstance(stop, threading.Event) else stop
        with self._cond:
            if not any(t is ticket for t, _ in self._queue):
                self._queue.append((ticket, owner))
            try:
                while self.running >= self.limit or self._next() is not ticket:
                    if stopped is not None and stopped():
                        return False
                    self._cond.wait(poll)
                self.running += 1
                if owner is not None:
                    self._held[id(ticket)] = owner
                    self._owners_running[owner] += 1
                    self._last_start.pop(owner, None)
                    self._last_start[owner] = self._starts
                    if len(self._last_start) > self.REMEMBERED:
                        del self._last_start[next(iter(self._last_start))]
                self._starts += 1
                return True
            finally:
                self._queue = [(t, o) for t, o in self._queue if t is not ticket]
                self._cond.notify_all()

    def enqueue(self, ticket: object, owner: Hashable | None = None) -> None:
        """Take `ticket`'s place in the queue now; its `acquire` (soon, from another thread) keeps it.

        A page that submits a job draws its place at once, before the job's thread has started."""
        with self._cond:
            if not any(t is ticket for t, _ in self._queue):
                self._queue.append((ticket, owner))

    def release(self, ticket: object | None = None) -> None:
        with self._cond:
            self.running -= 1
            owner = self._held.pop(id(ticket), None) if ticket is not None else None
            if owner is not None:
                self._owners_running[owner] -= 1
                if not self._owners_running[owner]:
                    del self._owners_running[owner]
            self._cond.notify_all()

    def position(self, ticket: object) -> int | None:
        """1 = next to start; None when the ticket is not waiting."""
        with self._cond:
            order = [t for t, _ in self._order()]
            return next((i + 1 for i, t in enumerate(order) if t is ticket), None)

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._queue)


def _limit() -> int:
    value = os.environ.get("CNN_LENS_MAX_JOBS") or os.environ.get("CNN_LENS_MAX_TRAININGS")
    return int(value) if value else os.cpu_count() or 1


HEAVY = Slots(_limit())

# For pages that use `abandon_after`: a job unwatched this long is cancelled. A page's heartbeat
# comes every few seconds while it is open; a minute leaves room for a slow connection or a
# server so busy that a rerun is late, and still frees a closed tab's slot soon.
WATCH_TIMEOUT = 60.0


@dataclass(eq=False)
class Job(Generic[T]):
    """One piece of heavy work in the background; the page reads it, `cancel()` stops it."""

    label: str
    slots: Slots
    state: JobState = "waiting"
    done: int = 0
    total: int = 0
    preview: Any = None  # the latest intermediate result the work chose to show
    result: T | None = None
    error: str | None = None
    started: float | None = None
    seconds: float = 0.0
    _cancel: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    owner: Hashable | None = None  # the student who asked first (the queue's fairness is by owner)
    _watchers: list[Hashable | None] = field(default_factory=lambda: [None])  # who watches (see `cancel`)
    abandon_after: float | None = None  # seconds without a `touch()` after which the job cancels itself
    abandoned: bool = False  # it did: nobody was watching any more
    _seen: float = field(default_factory=time.monotonic)

    def report(self, done: int, total: int) -> None:
        """The progress callback handed to the work: records progress, raises Cancelled once cancelled
        (or abandoned)."""
        self.done, self.total = done, total
        if self._stopped():
            raise Cancelled("Cancelled.")

    def touch(self) -> None:
        """Someone is still watching: the heartbeat that keeps a job with `abandon_after` alive."""
        self._seen = time.monotonic()

    def _stopped(self) -> bool:
        """Cancelled, or just found abandoned (then cancelled for good, so a new request starts afresh)."""
        if (
            not self._cancel.is_set()
            and self.abandon_after is not None
            and time.monotonic() - self._seen > self.abandon_after
        ):
            self.abandoned = True
            self._cancel.set()
        return self._cancel.is_set()

    def show(self, preview: Any) -> None:
        """Handed to the work for intermediate results (e.g. the image so far)."""
        self.preview = preview

    def cancel(self, owner: Hashable | None = None) -> None:
        """`owner` stops watching; once no one else watches, the job stops at its next progress call
        (running) or leaves the queue (waiting)."""
        with _shared_lock:
            if owner in self._watchers:
                self._watchers.remove(owner)
            elif self._watchers:
                self._watchers.pop()
            if not self._watchers:
                self._cancel.set()

    def watched_by(self, owner: Hashable) -> bool:
        return owner in self._watchers

    @property
    def active(self) -> bool:
        return self.state in ("waiting", "running")

    def position(self) -> int | None:
        """Place in the queue while waiting (1 = next), else None."""
        return self.slots.position(self) if self.state == "waiting" else None

    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0

    def eta(self) -> float | None:
        """Seconds left, extrapolated from the pace so far; None before the first step."""
        if self.state != "running" or not self.done or self.started is None:
            return None
        elapsed = time.perf_counter() - self.started
        return elapsed / self.done * max(0, self.total - self.done)

    def progress_text(self) -> str:
        """The progress bar's words. Before the work's first report the total is not known yet (the first
        step also builds the network's graph, seconds on a big model), so it says it is starting rather
        than "Step 0 of 0"."""
        if not self.total:
            return "Starting: preparing the network for the first step…"
        eta = self.eta()
        return f"Step {self.done} of {self.total}" + (f" · about {eta:.0f} s left" if eta is not None else "")

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)


BACKGROUND_NICE = 10  # how much lower a job thread's OS priority is than a page's (Linux nice values)

# PyTorch threads of a thread that has not chosen (read at import, before any job changed it).
_DEFAULT_THREADS = torch.get_num_threads()
_threads_lock = threading.Lock()


def background_thread() -> None:
    """Make the calling thread a background worker: one PyTorch thread, OS priority `BACKGROUND_NICE`.

    `torch.set_num_threads` is per thread for OpenMP, but it also sets the process-wide
    number that every thread starting PyTorch later reads once; so the thread's own
    number is fixed first, and that process-wide number is put back by a short-lived
    helper thread, leaving page threads with all cores. The nice value is per thread
    on Linux (elsewhere the priority is left alone).
    """
    with _threads_lock:
        torch.get_num_threads()  # this thread reads the process-wide number now, not after the change
        torch.set_num_threads(1)
        restore = threading.Thread(target=torch.set_num_threads, args=(_DEFAULT_THREADS,), name="cnn-lens-threads")
        restore.start()
        restore.join()
    if sys.platform.startswith("linux"):
        tid = threading.get_native_id()
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, tid, max(BACKGROUND_NICE, os.getpriority(os.PRIO_PROCESS, tid)))


def _work(job: Job[T], work: Callable[[Job[T]], T]) -> None:
    background_thread()
    if not job.slots.acquire(job._stopped, ticket=job, owner=job.owner):
        job.state = "cancelled"
        return
    try:
        job.started = time.perf_counter()
        job.state = "running"
        result = work(job)
        job.result = result
        job.state = "finished"  # last: a final state means everything else is filled in
    except Cancelled:
        job.state = "cancelled"
    except LensError as exc:  # written for the user
        job.error = str(exc)
        job.state = "failed"
    except Exception as exc:  # the page shows it; the background thread must not die silently
        job.error = f"{type(exc).__name__}: {exc}"
        job.state = "failed"
    finally:
        job.seconds = time.perf_counter() - job.started if job.started is not None else 0.0
        job.slots.release(job)


# Jobs submitted with a key, so identical requests share one run; bounded and expiring.
_shared = ResultStore(max_entries=64, ttl=3600)
_shared_lock = threading.Lock()
# Every job a student watches, so `submit` can hold them to PER_STUDENT; pruned as jobs end.
_watching: dict[Hashable, list[Job]] = {}

PER_STUDENT = 2  # one running and one waiting


class TooManyJobs(LensError):
    """A student asked for more heavy work while already having PER_STUDENT jobs running or waiting."""

    def __init__(self, jobs: list[Job]) -> None:
        self.jobs = jobs
        names = " and ".join(f"“{job.label}” ({job.state})" for job in jobs)
        super().__init__(
            f"You already have {len(jobs)} heavy jobs on this server: {names}. One runs and one waits at a "
            "time per person, so that everyone gets a turn. Cancel one, or wait until one has finished."
        )


def active_jobs(owner: Hashable) -> list[Job]:
    """The jobs `owner` watches that are still waiting or running, oldest first."""
    with _shared_lock:
        return _active(owner)


def _active(owner: Hashable) -> list[Job]:
    jobs = [job for job in _watching.get(owner, []) if job.active and job.watched_by(owner)]
    if jobs:
        _watching[owner] = jobs
    else:
        _watching.pop(owner, None)
    return jobs


def finished(result: T, label: str = "", seconds: float = 0.0) -> Job[T]:
    """A job that is done already (a result read from the store): pages show it like any other.

    seconds: what computing it took when it was made."""
    return Job(label, HEAVY, state="finished", result=result, seconds=seconds)


def submit(
    work: Callable[[Job[T]], T],
    label: str = "",
    slots: Slots | None = None,
    key: Hashable | None = None,
    abandon_after: float | None = None,
    owner: Hashable | None = None,
) -> Job[T]:
    """Run `work(job)` in a background thread as soon as a slot is free (of `slots`, default `HEAVY`);
    returns the Job at once.

    `work` should pass `job.report` as its progress callback (that is where
    cancelling takes effect) and may pass `job.show` for intermediate results.
    key: for deterministic work, what identifies its result (every parameter,
    seed included). A job with the same key that is waiting, running or finished
    is returned instead of starting another, with one more watcher.
    abandon_after: seconds after the last `job.touch()` (or the submit) at which the
    job cancels itself, for pages whose student may simply leave; None: never.
    owner: the student asking (any hashable id of their session): the queue is fair
    between owners, and an owner who already watches PER_STUDENT active jobs gets
    `TooManyJobs` instead of a new one (joining a finished shared job is always allowed).
    """
    with _shared_lock:
        hit, job = _shared.get(key) if key is not None else (False, None)
        if hit and not (job.state in ("waiting", "running", "finished") and not job._cancel.is_set()):
            hit = False
        if owner is not None and not (hit and job.state == "finished"):
            mine = _active(owner)
            if hit and job in mine:
                return job  # already watching it
            if len(mine) >= PER_STUDENT:
                raise TooManyJobs(mine)
        if hit:
            job._watchers.append(owner)
            job.touch()
        else:
            job = Job(label, HEAVY if slots is None else slots, abandon_after=abandon_after, owner=owner)
            job._watchers = [owner]
            if key is not None:
                _shared.put(key, job)
        if owner is not None and job.active:
            _watching.setdefault(owner, []).append(job)
        if hit:
            return job
    job.slots.enqueue(job, owner)
    job._thread = threading.Thread(target=_work, args=(job, work), daemon=True, name=f"cnn-lens-job {label}")
    job._thread.start()
    return job
