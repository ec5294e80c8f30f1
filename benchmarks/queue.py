"""The fair job queue under a class: cheap pages beside heavy jobs, and thirty students pressing Dream.

Run: .venv/bin/python -m benchmarks.queue [--per-core 2] [--predictions 10] [--rounds 3]

In one process, as on the server (Streamlit runs each session in a thread):
1. A cheap page: an EfficientNet-Lite0 prediction of a new image every 0.2 s, alone and
   then while two heavy jobs per core run (EfficientNet-Lite0 feature visualisations),
   (a) as plain threads with PyTorch's default threads and priority (how heavy work ran
   before the queue) and (b) as jobs of app.serving.jobs (one PyTorch thread each, lower
   OS priority). Prints median and p95 latency and their ratio to the solo figures, and
   the dream steps the heavy work made meanwhile. The three conditions alternate for
   `--rounds` rounds, so a machine whose other load drifts affects them alike.
2. Thirty students press the same Dream: how many runs start.
3. Thirty students press thirty different Dreams: the places they see, how long
   submitting took, and the cheap page's latency meanwhile.
Figures depend on what else the machine runs: print `uptime` beside them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import threading
import time

from app.analyses import dreams
from app.base.errors import Cancelled
from app.networks.models import get_model_or_untrained
from app.serving import jobs
from tests.conftest import photo


def _latencies(model, n: int, pause: float = 0.2) -> list[float]:
    out = []
    for i in range(n):
        x = model.preprocess(photo(seed=100 + i))
        start = time.perf_counter()
        model.top_k(x)
        out.append(time.perf_counter() - start)
        time.sleep(pause)
    return out


def _p95(values: list[float]) -> float:
    return sorted(values)[max(0, round(0.95 * len(values)) - 1)]


def _show(name: str, values: list[float], solo: list[float] | None = None) -> None:
    ratio = "" if solo is None else f"   p95 ratio {_p95(values) / _p95(solo):4.2f}x"
    print(f"{name:52} median {statistics.median(values) * 1000:7.1f} ms   p95 {_p95(values) * 1000:7.1f} ms{ratio}")


class _Steps:
    """Counts dream steps across threads and stops them all on request."""

    def __init__(self) -> None:
        self.count, self.stop, self._lock = 0, threading.Event(), threading.Lock()

    def __call__(self, done: int, total: int) -> None:
        with self._lock:
            self.count += 1
        if self.stop.is_set():
            raise Cancelled("benchmark over")


def _dream(model, seed: int, progress) -> None:
    with contextlib.suppress(Cancelled):
        dreams.visualise(model, dreams.default_dream_layer(model), seed, 128, 10_000, seed, progress)


def _under(model, n_heavy: int, predictions: int, as_jobs: bool) -> tuple[list[float], int]:
    steps = _Steps()
    if as_jobs:
        slots = jobs.Slots(n_heavy)
        running = [jobs.submit(lambda job, s=s: _dream(model, s, steps), f"dream {s}", slots) for s in range(n_heavy)]
    else:
        running = [threading.Thread(target=_dream, args=(model, s, steps), daemon=True) for s in range(n_heavy)]
        for thread in running:
            thread.start()
    time.sleep(3)  # every heavy job under way
    before = steps.count
    latencies = _latencies(model, predictions)
    made = steps.count - before
    steps.stop.set()
    for job in running:
        job.join(120)
    return latencies, made


def _thirty_same(model) -> None:
    runs, release = [], threading.Event()

    def work(job: jobs.Job) -> None:
        runs.append(1)
        release.wait(60)

    key = ("features", model.name, "benchmark", 0)
    asked = [jobs.submit(work, "same dream", jobs.Slots(2), key=key, owner=f"student {i}") for i in range(30)]
    release.set()
    asked[0].join(60)
    print(f"30 students, the same Dream: {len(runs)} run(s) started, {len({id(j) for j in asked})} job(s) watched")


def _thirty_different(model, predictions: int) -> None:
    slots = jobs.Slots(os.cpu_count() or 1)
    steps = _Steps()
    start = time.perf_counter()
    asked = [
        jobs.submit(lambda job, s=s: _dream(model, s, steps), f"dream {s}", slots, owner=f"student {s}")
        for s in range(30)
    ]
    submitted = time.perf_counter() - start
    time.sleep(2)
    places = sorted(p for p in (job.position() for job in asked) if p is not None)
    running = sum(job.state == "running" for job in asked)
    latencies = _latencies(model, predictions)
    steps.stop.set()
    for job in asked:
        job.cancel(job.owner)
        job.join(120)
    print(
        f"30 students, 30 different Dreams: submitted in {submitted * 1000:.0f} ms; {running} running, "
        f"places {places[0]}..{places[-1]} ({len(set(places))} distinct) for the {len(places)} waiting"
    )
    _show("prediction while 30 Dreams are queued", latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-core", type=int, default=2, help="heavy jobs per core")
    parser.add_argument("--predictions", type=int, default=10, help="per condition and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    model, _ = get_model_or_untrained("efficientnet_lite0")
    model.top_k(model.preprocess(photo()))  # warm-up
    n_heavy = args.per_core * (os.cpu_count() or 1)
    print(f"{os.cpu_count()} cores; load average before: {os.getloadavg()}")
    solo: list[float] = []
    beside: dict[bool, list[float]] = {False: [], True: []}
    made = {False: 0, True: 0}
    for _ in range(args.rounds):
        solo += _latencies(model, args.predictions)
        for as_jobs in (False, True):
            latencies, steps = _under(model, n_heavy, args.predictions, as_jobs)
            beside[as_jobs] += latencies
            made[as_jobs] += steps
    _show("EfficientNet-Lite0 prediction alone", solo)
    for as_jobs, name in ((False, "plain threads"), (True, "queued jobs")):
        _show(f"prediction beside {n_heavy} dreams as {name}", beside[as_jobs], solo)
        print(f"{'':52} ({made[as_jobs]} dream steps made meanwhile)")
    _thirty_same(model)
    _thirty_different(model, args.predictions)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
