"""A class on one server, measured at the protocol level: simulated students, no browsers.

    python -m benchmarks.class_load --model fashion_cnn --scenario tour --students 10 --minutes 3 \\
        --server-cores 0 --client-cores 1

Starts the app itself (`python -m scripts.serve`: the models load and run before the port
opens), offering only the model measured, pinned with `taskset` to --server-cores; this
process moves to --client-cores. Each student (benchmarks/protocol.py) speaks Streamlit's
own websocket protocol and uploads its own photo (a seeded variant of a bundled one, phone-sized).

Scenarios, seeded by --seed:
- tour: students arrive within --arrival seconds, choose the model, upload, then visit every
  page of --pages in turn (again from the first until --minutes have passed), thinking
  --think seconds (uniform) before each click and changing a widget of the page now and then
  (--change-rate);
- burst: everyone sets up first; then the teacher says "everyone open X now": all students
  switch to the same page within --burst-spread seconds; the next page when all have it, after
  a pause of --think seconds, until --minutes have passed.

Printed per page: p50 / p95 / max seconds from click to finished run, errors (exceptions and
error alerts on screen, runs that never finish, dropped sockets), lost clicks (a change the
server drew back with its old value, a page switch that landed elsewhere), server CPU-s per
click (the server's CPU time, sampled every 0.2 s and shared among the clicks in flight), MB
sent per click; then the server's resident memory and this process's own CPU per click, which
must stay under 10 % of the server's or the figures are not the server's (exit status 1).
Several --model and --students values run one after another, each on a fresh server, and end
with one markdown table for docs/HOSTING.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import itertools
import os
import random
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageEnhance

from benchmarks.protocol import Run, Student, Widget
from benchmarks.server import Server, parse_cores, pin_self, pinned_server

REPO = Path(__file__).resolve().parent.parent
TITLES = {
    "prediction": "Prediction & architecture",
    "overview": "Network overview",
    "activations": "Activations",
    "filters": "Filters",
    "attribution": "Attribution",
    "sanity": "Sanity checks",
    "compare": "Models side by side",
    "occlusion": "Occlusion",
    "units": "What units look for",
    "feature_space": "Feature space",
    "playground": "Layer playground",
    "convolution": "Convolution, step by step",
    "training": "Live training",
    "dreams": "Dreams",
}
DEFAULT_PAGES = ["prediction", "activations", "filters", "attribution", "feature_space", "playground", "units"]
SETTABLE = {"selectbox", "radio", "slider", "checkbox", "button_group", "number_input"}
CLIENT_SHARE_LIMIT = 0.10  # the clients' CPU must stay below this share of the server's
CPU_SAMPLE_S = 0.2


# ---- pure parts -----------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile: the smallest value with at least q % of the values at or below it.

    Conservative for the small samples of a class (p95 of 10 clicks is the slowest one), and
    always a value that was measured."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n q / 100), at least 1
    return ordered[int(rank) - 1]


def share_cpu(samples: list[tuple[float, float]], spans: list[tuple[float, float]]) -> tuple[list[float], float]:
    """Share the server's CPU among the clicks in flight.

    samples: (time, cumulative CPU-s) readings; spans: (start, end) of each click. The CPU of each
    interval between readings is split by time: the part of the interval no click covers is idle
    work (pings, timers), the rest goes to the clicks covering it, in proportion to their overlap.
    Returns each click's CPU-s and the idle CPU-s."""
    shares = [0.0] * len(spans)
    idle = 0.0
    for (t0, c0), (t1, c1) in itertools.pairwise(samples):
        clipped = [(max(t0, start), min(t1, end)) for start, end in spans]
        overlaps = [max(0.0, b - a) for a, b in clipped]
        total = sum(overlaps)
        covered = _union_length([c for c, o in zip(clipped, overlaps, strict=True) if o > 0])
        busy = (c1 - c0) * covered / (t1 - t0) if t1 > t0 else 0.0
        idle += (c1 - c0) - busy
        for i, o in enumerate(overlaps):
            if o:
                shares[i] += busy * o / total
    return shares, idle


def _union_length(segments: list[tuple[float, float]]) -> float:
    length, reach = 0.0, float("-inf")
    for a, b in sorted(segments):
        if b > reach:
            length += b - max(a, reach)
            reach = b
    return length


@dataclass
class Click:
    """One student action and what it cost."""

    student: int
    kind: str  # "setup", "view" (open a page), "change" (a widget on the page)
    run: Run
    start: float  # time.monotonic() when the click was sent
    cpu: float = 0.0  # server CPU-s shared to this click

    @property
    def errors(self) -> list[str]:
        out = [f"exception: {e}" for e in self.run.exceptions] + [f"error alert: {e}" for e in self.run.error_alerts]
        if not self.run.finished:
            out.append(f"{self.run.action}: {self.run.status}")
        return out


@dataclass
class Row:
    label: str
    clicks: int
    p50: float
    p95: float
    max: float
    cpu: float  # server CPU-s per click
    mb: float  # MB sent per click
    errors: int
    lost: int


def rows(clicks: list[Click]) -> list[Row]:
    """One row per page for page views, one per page for widget changes, one per setup step."""
    groups: dict[str, list[Click]] = defaultdict(list)
    for c in clicks:
        label = {"view": c.run.page, "change": f"{c.run.page}: widget change", "setup": c.run.action}[c.kind]
        groups[label].append(c)
    out = []
    for label, group in groups.items():
        seconds = [c.run.seconds for c in group]
        out.append(
            Row(
                label,
                len(group),
                percentile(seconds, 50),
                percentile(seconds, 95),
                max(seconds),
                sum(c.cpu for c in group) / len(group),
                sum(c.run.bytes for c in group) / len(group) / 1e6,
                sum(1 for c in group if c.errors),
                sum(1 for c in group if c.run.lost),
            )
        )
    return out


def pick_change(widgets: list[Widget], current: Callable[[Widget], object], rng: random.Random):
    """A widget of the page and a new value for it, or None. Not the sidebar's (the model and the image
    stay), not a form's (it waits for its submit button), not one that never reruns the page."""
    candidates = [
        w
        for w in widgets
        if not w.in_sidebar
        and w.kind in SETTABLE
        and not w.form_id
        and not getattr(w.proto, "disabled", False)
        and not getattr(w.proto, "ignore_rerun", False)
    ]
    rng.shuffle(candidates)
    for w in candidates:
        value = _new_value(w, current(w), rng)
        if value is not None:
            return w, value
    return None


def _new_value(w: Widget, now: object, rng: random.Random) -> object:
    p = w.proto
    if w.kind == "checkbox":
        return not now
    if w.kind in ("selectbox", "radio"):
        others = [o for o in w.options if o != now]
        return rng.choice(others) if others else None
    if w.kind == "button_group":
        others = [o for o in w.options if [o] != now]
        return [rng.choice(others)] if others else None
    if w.kind == "slider":
        if p.options:
            if len(p.default) != 1:
                return None  # a range select-slider
            others = [o for o in p.options if [o] != now]
            return [rng.choice(others)] if others else None
        if p.data_type not in (p.INT, p.FLOAT) or p.step <= 0:
            return None  # dates and times
        grid = [p.min + p.step * k for k in range(round((p.max - p.min) / p.step) + 1)]
        if len(p.default) == 1:
            others = [v for v in grid if [v] != now]
            return [rng.choice(others)] if others else None
        picked = sorted(rng.sample(grid, 2)) if len(grid) > 1 else None  # a range slider
        return None if picked == now else picked
    if w.kind == "number_input":
        step = p.step or 1.0
        if p.has_min and p.has_max:
            others = [p.min + step * k for k in range(round((p.max - p.min) / step) + 1) if p.min + step * k != now]
            return rng.choice(others) if others else None
        return (now if isinstance(now, float) else p.default) + step
    return None


def student_photo(index: int, seed: int) -> bytes:
    """A phone-sized JPEG of its own for each student: a bundled photo, enlarged, cropped, flipped, lit."""
    rng = random.Random(seed * 10_007 + index)
    sources = sorted((REPO / "assets" / "photos").glob("*.jpg")) + sorted((REPO / "assets" / "samples").glob("*.jpg"))
    image = Image.open(rng.choice(sources)).convert("RGB").resize((1800, 1350), Image.Resampling.BICUBIC)
    left, top = rng.randint(0, 200), rng.randint(0, 150)
    image = image.crop((left, top, left + 1600, top + 1200))
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.8, 1.2))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


# ---- students -------------------------------------------------------------------------------


@dataclass
class Plan:
    model: str
    title: str  # the model's title, as the sidebar lists it
    pages: list[str]  # page titles
    seed: int
    minutes: float
    arrival: float
    think: tuple[float, float]
    change_rate: float
    burst_spread: float
    timeout: float
    photos: list[bytes] = field(default_factory=list)  # one per student, made before the clock starts
    clicks: list[Click] = field(default_factory=list)

    def deadline(self, start: float) -> float:
        return start + self.minutes * 60


async def _act(plan: Plan, index: int, kind: str, action) -> Run:
    start = time.monotonic()
    run = await action
    plan.clicks.append(Click(index, kind, run, start))
    return run


async def _setup(plan: Plan, index: int, url: str, title: str) -> Student:
    """Open the app, choose the model, switch the image source to Upload and upload this student's photo."""
    s = Student(url, timeout=plan.timeout)
    await _act(plan, index, "setup", s.connect())
    model = s.widget("Model", "selectbox", sidebar=True)
    if s.value(model) != title:
        await _act(plan, index, "setup", s.set_widget(model, title))
    await _act(plan, index, "setup", s.set_widget(s.widget("Image", "radio", sidebar=True), "Upload"))
    uploader = s.widget("Upload an image", "file_uploader")
    await _act(plan, index, "setup", s.upload(uploader, "photo.jpg", plan.photos[index]))
    return s


async def tour_student(plan: Plan, index: int, url: str, title: str, start: float) -> None:
    rng = random.Random(plan.seed * 7919 + index)
    await asyncio.sleep(rng.uniform(0, plan.arrival))
    s = await _setup(plan, index, url, title)
    try:
        for page in itertools.cycle(plan.pages):
            await asyncio.sleep(rng.uniform(*plan.think))
            if time.monotonic() >= plan.deadline(start):
                return
            await _act(plan, index, "view", s.switch_page(page))
            if rng.random() < plan.change_rate:
                change = pick_change(s.widgets(), s.value, rng)
                if change is not None:
                    await asyncio.sleep(rng.uniform(*plan.think))
                    await _act(plan, index, "change", s.set_widget(*change))
    finally:
        await s.close()


async def burst_class(plan: Plan, students: int, url: str, title: str, start: float) -> None:
    rngs = [random.Random(plan.seed * 7919 + i) for i in range(students)]  # one per student: seeded whatever the order

    async def arrive(i: int) -> Student:
        await asyncio.sleep(rngs[i].uniform(0, plan.arrival))
        return await _setup(plan, i, url, title)

    class_ = await asyncio.gather(*(arrive(i) for i in range(students)))

    async def open_now(i: int, s: Student, page: str) -> None:
        await asyncio.sleep(rngs[i].uniform(0, plan.burst_spread))
        await _act(plan, i, "view", s.switch_page(page))

    try:
        for page in itertools.cycle(plan.pages):
            await asyncio.gather(*(open_now(i, s, page) for i, s in enumerate(class_)))
            await asyncio.sleep(rngs[0].uniform(*plan.think))
            if time.monotonic() >= plan.deadline(start):
                return
    finally:
        await asyncio.gather(*(s.close() for s in class_))


# ---- one measured run -----------------------------------------------------------------------


@dataclass
class Result:
    model: str
    scenario: str
    students: int
    clicks: list[Click]
    server_cpu: float
    idle_cpu: float
    client_cpu: float
    rss_start: float
    rss_end: float
    rss_peak: float
    wall: float
    load: tuple[float, float]  # 1-minute load average at the start and the end


async def _sample(server: Server, samples: list[tuple[float, float]], stop: asyncio.Event) -> None:
    cpu = server.cpu_reader()
    while not stop.is_set():
        samples.append((time.monotonic(), cpu()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), CPU_SAMPLE_S)
    samples.append((time.monotonic(), cpu()))


async def measure(server: Server, plan: Plan, scenario: str, students: int) -> Result:
    title = plan.title
    plan.photos = [student_photo(i, plan.seed) for i in range(students)]
    samples: list[tuple[float, float]] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(_sample(server, samples, stop))
    rss_start = server.memory_mb()[0]
    load0, client0, start = os.getloadavg()[0], time.process_time(), time.monotonic()
    if scenario == "tour":
        await asyncio.gather(*(tour_student(plan, i, server.url, title, start) for i in range(students)))
    else:
        await burst_class(plan, students, server.url, title, start)
    client_cpu, wall = time.process_time() - client0, time.monotonic() - start
    stop.set()
    await sampler
    shares, idle = share_cpu(samples, [(c.start, c.start + c.run.seconds) for c in plan.clicks])
    for click, cpu in zip(plan.clicks, shares, strict=True):
        click.cpu = cpu
    rss_end, rss_peak = server.memory_mb()
    return Result(
        plan.model,
        scenario,
        students,
        plan.clicks,
        samples[-1][1] - samples[0][1],
        idle,
        client_cpu,
        rss_start,
        rss_end,
        rss_peak,
        wall,
        (load0, os.getloadavg()[0]),
    )


# ---- report ---------------------------------------------------------------------------------


def _fmt_s(x: float) -> str:
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def page_table(result: Result) -> str:
    lines = [
        f"### {result.model}, {result.students} student(s), {result.scenario}",
        "",
        "| page | clicks | p50 / p95 / max (s) | server CPU-s per click | MB sent per click | errors | lost |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows(result.clicks):
        lines.append(
            f"| {r.label} | {r.clicks} | {_fmt_s(r.p50)} / {_fmt_s(r.p95)} / {_fmt_s(r.max)} | {r.cpu:.2f} "
            f"| {r.mb:.2f} | {r.errors} | {r.lost} |"
        )
    return "\n".join(lines)


def summary_row(result: Result) -> str:
    views = [c.run.seconds for c in result.clicks if c.kind != "setup"]
    n = len(result.clicks)
    errors = sum(1 for c in result.clicks if c.errors)
    lost = sum(1 for c in result.clicks if c.run.lost)
    share = result.client_cpu / result.server_cpu if result.server_cpu else float("nan")
    return (
        f"| {result.model} | {result.students} | {result.scenario} | {n} | {result.server_cpu / n:.2f} "
        f"| {_fmt_s(percentile(views, 50))} / {_fmt_s(percentile(views, 95))} / {_fmt_s(max(views, default=0))} "
        f"| {errors} | {lost} | {result.rss_peak:.0f} | {100 * share:.1f} % "
        f"| {result.load[0]:.1f} → {result.load[1]:.1f} |"
    )


SUMMARY_HEADER = (
    "| model | students | scenario | clicks | server CPU-s per click | page p50 / p95 / max (s) | errors | lost "
    "| peak RSS (MB) | client CPU / server CPU | load average |\n| --- | --- | --- | --- | --- | --- | --- | --- "
    "| --- | --- | --- |"
)


def report(result: Result) -> bool:
    """Print one run's tables and its details; False when the clients' CPU was too large a share."""
    print(page_table(result))
    n = len(result.clicks)
    share = result.client_cpu / result.server_cpu if result.server_cpu else float("nan")
    print(
        f"\n{n} clicks in {result.wall:.0f} s; server CPU {result.server_cpu:.1f} s ({result.server_cpu / n:.2f} per "
        f"click, {result.idle_cpu:.1f} s with no click in flight); RSS {result.rss_start:.0f} MB after warm-up, "
        f"{result.rss_end:.0f} MB at the end, peak {result.rss_peak:.0f} MB; load average {result.load[0]:.1f} → "
        f"{result.load[1]:.1f} ({os.cpu_count()} cores)"
    )
    print(
        f"clients' CPU {result.client_cpu:.2f} s = {result.client_cpu / n * 1000:.0f} ms per click, "
        f"{100 * share:.1f} % of the server's"
    )
    for err in sorted({f"student {c.student}: {e}" for c in result.clicks for e in c.errors})[:15]:
        print("  error:", err)
    for c in [c for c in result.clicks if c.run.lost][:15]:
        print(f"  lost click: student {c.student}: {c.run.action}: {c.run.lost}")
    ok = share < CLIENT_SHARE_LIMIT
    if not ok:
        print(f"CHECK FAILED: the clients used {100 * share:.1f} % of the server's CPU (limit 10 %)")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="+", default=["fashion_cnn"], help="registry names, one run each")
    parser.add_argument("--scenario", nargs="+", choices=["tour", "burst"], default=["tour"])
    parser.add_argument("--students", nargs="+", type=int, default=[10])
    parser.add_argument("--minutes", type=float, default=3.0, help="length of each run after the first arrival")
    parser.add_argument("--server-cores", default="0", help="taskset list for the server, e.g. 0 or 0-1")
    parser.add_argument("--client-cores", default="1", help="taskset list for this process (the students)")
    parser.add_argument("--pages", nargs="+", choices=list(TITLES), default=DEFAULT_PAGES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--arrival", type=float, default=60.0, help="students arrive within this many seconds")
    parser.add_argument("--think", type=float, nargs=2, default=(5.0, 20.0), metavar=("MIN", "MAX"))
    parser.add_argument("--change-rate", type=float, default=0.3, help="chance of a widget change after a page view")
    parser.add_argument("--burst-spread", type=float, default=5.0, help="burst: everyone clicks within this many s")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds a run may take before it counts as lost")
    parser.add_argument("--offer", help="CNN_LENS_OFFER for the server (default: only the model measured)")
    args = parser.parse_args(argv)
    server_cores, client_cores = parse_cores(args.server_cores), parse_cores(args.client_cores)
    if server_cores & client_cores:
        print(f"warning: server and clients share cores {sorted(server_cores & client_cores)}", file=sys.stderr)
    pin_self(client_cores)
    from app.networks.models import model_names  # imports torch: before any measurement

    titles = model_names()
    unknown = [m for m in args.model if m not in titles]
    if unknown:
        parser.error(f"unknown model {unknown[0]!r}; this checkout has {', '.join(titles)}")
    results, ok = [], True
    for model, students, scenario in itertools.product(args.model, args.students, args.scenario):
        env = {"CNN_LENS_OFFER": args.offer or model}
        with pinned_server(server_cores, env) as server:
            plan = Plan(
                model,
                titles[model],
                [TITLES[p] for p in args.pages],
                args.seed,
                args.minutes,
                args.arrival,
                tuple(args.think),
                args.change_rate,
                args.burst_spread,
                args.timeout,
            )
            result = asyncio.run(measure(server, plan, scenario, students))
        ok = report(result) and ok
        results.append(result)
        print()
    print(f"## Summary (server on cores {args.server_cores}, students on {args.client_cores}, seed {args.seed})\n")
    print(SUMMARY_HEADER)
    for result in results:
        print(summary_row(result))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
