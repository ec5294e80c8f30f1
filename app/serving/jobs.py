"""Heavy work shared fairly: a per-process limit on simultaneous jobs, a queue with positions, cancel.

A class of students shares one server with a few cores. If ten of them press
"Dream" at once and all ten optimisations start, each gets a tenth of the cores,
every page (theirs and everyone else's) crawls, and nobody finishes soon. So
heavy work goes through `Slots`: at most `limit` jobs run at once and the others
wait in arrival order, each able to see its place in the queue. One pool,
`HEAVY`, is shared by everything heavy in the process (dreams and live training);
`$CNN_LENS_MAX_JOBS` sets its size (default: one per core; the older
`$CNN_LENS_MAX_TRAININGS` is still read).

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
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from app.base.errors import Cancelled, LensError
from app.serving.lru import ResultStore

T = TypeVar("T")
JobState = Literal["waiting", "running", "finished", "cancelled", "failed"]


class Slots:
    """At most `limit` holders at once; the others wait first come, first served, and know their place."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._cond = threading.Condition()
        self._queue: list[object] = []  # waiting tickets, oldest first
        self.running = 0

    def acquire(
        self,
        stop: threading.Event | Callable[[], bool] | None = None,
        poll: float = 0.2,
        ticket: object | None = None,
    ) -> bool:
        """Wait for a free slot (in arrival order); False if `stop` was set (or returned True) while waiting.

        ticket: what `position` is asked about while waiting (default: an anonymous one).
        """
        ticket = object() if ticket is None else ticket
        stopped = stop.is_set if isinstance(stop, threading.Event) else stop
        with self._cond:
            self._queue.append(ticket)
            try:
                while self.running >= self.limit or self._queue[0] is not ticket:
                    if stopped is not None and stopped():
                        return False
                    self._cond.wait(poll)
                self.running += 1
                return True
            finally:
                self._queue.remove(ticket)
                self._cond.notify_all()

    def release(self) -> None:
        with self._cond:
            self.running -= 1
            self._cond.notify_all()

    def position(self, ticket: object) -> int | None:
        """1 = next to start; None when the ticket is not waiting."""
        with self._cond:
            return self._queue.index(ticket) + 1 if ticket in self._queue else None

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
    _watchers: int = 1  # people watching a shared job (submit with a key); it stops when none is left
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

    def cancel(self) -> None:
        """Stop at the next progress call (running) or leave the queue (waiting), once no one else watches."""
        with _shared_lock:
            self._watchers -= 1
            if self._watchers <= 0:
                self._cancel.set()

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


def _work(job: Job[T], work: Callable[[Job[T]], T]) -> None:
    if not job.slots.acquire(job._stopped, ticket=job):
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
        job.slots.release()


# Jobs submitted with a key, so identical requests share one run; bounded and expiring.
_shared = ResultStore(max_entries=64, ttl=3600)
_shared_lock = threading.Lock()


def submit(
    work: Callable[[Job[T]], T],
    label: str = "",
    slots: Slots | None = None,
    key: Hashable | None = None,
    abandon_after: float | None = None,
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
    """
    with _shared_lock:
        if key is not None:
            hit, job = _shared.get(key)
            if hit and job.state in ("waiting", "running", "finished") and not job._cancel.is_set():
                job._watchers += 1
                job.touch()
                return job
        job = Job(label, HEAVY if slots is None else slots, abandon_after=abandon_after)
        if key is not None:
            _shared.put(key, job)
    job._thread = threading.Thread(target=_work, args=(job, work), daemon=True, name=f"cnn-lens-job {label}")
    job._thread.start()
    return job
