"""What one page view costs the server: CPU seconds and bytes, page by page, in this process.

Runs the real app (entry point, sidebar, pages) in Streamlit's AppTest, which runs each script in
its own thread exactly as the server does for a session. For every model and page it plays one
student: open the page on a sample image (warms the model and the image-independent tables; not
counted), switch the sidebar's image source to Upload, upload a new photo (a seeded variant, never
seen before, so nothing of it is cached), rerun with nothing new, then a few typical widget changes.
Each step reports:

- cpu: process CPU seconds of the step (time.process_time: every thread of this process, so
  PyTorch's own threads too; `--threads` sets PyTorch's, 1 by default: one core), the
  serialization of its messages included; not included: the server's websocket writes;
- sent: serialized bytes of the ForwardMsgs the run produced, after Streamlit's message cache (an
  element of 10 kB or more that the browser got in one of the two runs before is sent as its
  hash, as the server does when the client reports it cached), plus the bytes of media files
  (st.image pictures) the browser has not fetched yet in this session; download buttons' files
  are left out (fetched only when clicked);
- raw: the same messages without the message cache (what the server serializes and hashes).

Widgets are found by key or label, never by position. Run with the server's settings:

    python -m benchmarks.page_cost                       # every page, Fashion CNN and EfficientNet-Lite0
    python -m benchmarks.page_cost --models vgg16 --pages prediction units
    python -m benchmarks.page_cost --profile rerun --pages units   # pyinstrument of that step's script run

Figures taken on a busy machine: CPU seconds are the robust ones; print `uptime` beside them.
"""

from __future__ import annotations

import argparse
import io
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.runtime.pages_manager import PagesManager
from streamlit.runtime.scriptrunner import ScriptRunner
from streamlit.testing.v1 import AppTest, local_script_runner

from app.networks.samples import SAMPLES_DIR
from tests.apptest import ENTRY, fragment_of, rerun_fragment

PAGES = {
    "prediction": "pages/prediction.py",
    "overview": "pages/overview.py",
    "activations": "pages/activations.py",
    "filters": "pages/filters.py",
    "attribution": "pages/attribution.py",
    "units": "pages/units.py",
    "feature_space": "pages/feature_space.py",
    "playground": "pages/playground.py",
}
MODELS = ["fashion_cnn", "efficientnet_lite0"]
PHOTO = {"fashion_cnn": "product_sneaker.jpg"}  # the others get photo_cat.jpg
CACHED_MESSAGE_RUNS = 2  # Streamlit's global.maxCachedMessageAge
CACHED_MESSAGE_SIZE = 10_000  # global.minCachedMessageSize


def _widget(at: AppTest, kind: str, label: str) -> object:
    """The widget of this kind whose key or label is `label` (keys first: labels repeat across pages; a
    label's part in brackets, such as a range, is left out)."""
    widgets = list(getattr(at, kind))
    found = [w for w in widgets if w.key == label] or [w for w in widgets if w.label.split(" (")[0] == label]
    if not found:
        raise LookupError(f"no {kind} with key or label {label!r} on this page")
    return found[0]


def _set(kind: str, label: str, value: Callable[[object], object]) -> Callable[[AppTest], None]:
    """A widget change: the widget's value becomes value(widget)."""

    def change(at: AppTest) -> object:
        widget = _widget(at, kind, label)
        widget.set_value(value(widget))
        return widget

    return change


def _plus_one(widget) -> object:
    return min(widget.value + 1, widget.max)


# Typical widget changes per page: (what, change). Layout-only changes first.
CHANGES: dict[str, list[tuple[str, Callable[[AppTest], object]]]] = {
    "overview": [("channel +1", _set("number_input", "Channel", _plus_one))],
    "activations": [
        ("colour scale per map", _set("radio", "Colour scale", lambda w: "per map")),
        ("overlay opacity", _set("slider", "Overlay opacity", lambda w: 0.8)),
        ("channel +1", _set("number_input", "Channel", _plus_one)),
    ],
    "filters": [("filter +1", _set("number_input", "Filter", _plus_one))],
    "attribution": [
        ("overlay opacity", _set("slider", "attr_opacity", lambda w: 0.8)),
        ("clip percentile", _set("slider", "attr_clip", lambda w: 97.0)),
    ],
    "units": [
        ("which of the nine", _set("radio", "units_which", lambda w: 2)),
        ("channel +1", _set("number_input", "Channel", _plus_one)),
    ],
    "playground": [
        ("temperature", _set("select_slider", "pg_temperature", lambda w: 2.0)),
        ("pool stride", _set("slider", "pg_stride", lambda w: 1)),
        ("8x8 crop", _set("radio", "pg_view", lambda w: w.options[1])),
    ],
}


@dataclass
class Step:
    model: str
    page: str
    what: str
    cpu: float
    wall: float
    sent: int
    raw: int
    error: str = ""


@dataclass
class Wire:
    """What the browser of one session already holds: message hashes of the last runs, media files fetched."""

    recent: list[set[str]] = field(default_factory=list)
    media: set[str] = field(default_factory=set)
    messages: list = field(default_factory=list)  # this run's ForwardMsgs
    new_media: dict[str, int] = field(default_factory=dict)  # this run's media files: id -> bytes

    def bytes_of_run(self) -> tuple[int, int]:
        """(sent, raw) for the run just finished; then remember what the browser now holds."""
        cached = set().union(*self.recent) if self.recent else set()
        raw = sent = 0
        hashes = set()
        for msg in self.messages:
            size = len(msg.SerializeToString())  # the server serializes every message once
            raw += size
            cacheable = size >= CACHED_MESSAGE_SIZE and msg.WhichOneof("type") == "delta"
            sent += 64 if cacheable and msg.hash in cached else size
            if cacheable:
                hashes.add(msg.hash)
        for file_id, size in self.new_media.items():
            if file_id not in self.media:
                sent += size
                self.media.add(file_id)
        self.recent = [*self.recent, hashes][-CACHED_MESSAGE_RUNS:]
        self.messages, self.new_media = [], {}
        return sent, raw


WIRE = Wire()


def _record_messages() -> None:
    """Keep each run's ForwardMsgs and media files for Wire (AppTest parses and drops them)."""
    parse = local_script_runner.parse_tree_from_messages

    def recording(messages):
        WIRE.messages = list(messages)
        return parse(messages)

    local_script_runner.parse_tree_from_messages = recording
    load = MemoryMediaFileStorage.load_and_get_id

    def counting(self, path_or_data, mimetype, kind, filename=None):
        file_id = load(self, path_or_data, mimetype, kind, filename)
        if kind.name == "MEDIA":
            WIRE.new_media[file_id] = len(self.get_file(file_id).content)
        return file_id

    MemoryMediaFileStorage.load_and_get_id = counting


def _run_the_entry_script_every_time() -> None:
    """Make AppTest run streamlit_app.py (sidebar included) on every run, as the server does.

    AppTest forgets before each run that the app uses st.navigation; seeing a pages/ folder, it then
    runs a page's file alone (Streamlit's old multipage mode) on every run after the first one, so
    the sidebar never runs and its cost and elements are missing. The server learns it once, on its
    first run, and keeps it for the process.
    """
    init = PagesManager.__init__

    def navigation_app(self, *args, **kwargs) -> None:
        init(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    PagesManager.__init__ = navigation_app


PROFILES: list = []


def _profile_script_runs() -> None:
    """Profile each script run in its own thread (pyinstrument samples the thread that starts it)."""
    from pyinstrument import Profiler

    run = ScriptRunner._run_script

    def profiled(self, rerun_data):
        with Profiler(interval=0.002) as profiler:
            run(self, rerun_data)
        PROFILES.append(profiler)

    ScriptRunner._run_script = profiled


def variant(model: str, seed: int, side: int = 800) -> bytes:
    """A photo nobody uploaded before: the model's sample photo enlarged to `side`, with seeded faint noise."""
    image = Image.open(SAMPLES_DIR / PHOTO.get(model, "photo_cat.jpg")).convert("RGB")
    image = image.resize((side, round(side * image.height / image.width)), Image.Resampling.BICUBIC)
    noise = np.random.default_rng(seed).normal(0, 3, (image.height, image.width, 3))
    pixels = np.clip(np.asarray(image, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _timed(at: AppTest, model: str, page: str, what: str, steps: list[Step], profile: str | None, widget=None) -> None:
    """One run (of `widget`'s fragment alone when it sits in one, as the browser asks), measured."""
    PROFILES.clear()
    wall, cpu = time.perf_counter(), time.process_time()
    rerun_fragment(at, widget) if widget is not None else at.run()
    sent, raw = WIRE.bytes_of_run()  # in the timed part: the server serializes what it sends
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    error = "; ".join(str(e.value)[:80] for e in at.exception) + "; ".join(e.value[:80] for e in at.error)
    steps.append(Step(model, page, what, cpu, wall, sent, raw, error))
    if profile and what.startswith(profile):
        for p in PROFILES:
            print(f"\n===== {model} · {page} · {what} =====")
            print(p.output_text(unicode=True, color=False, show_all=False))


def student(model: str, page: str, seed: int, profile: str | None) -> list[Step]:
    """One student on one page: sample (warm-up), source to Upload, a new photo, a rerun, widget changes."""
    steps: list[Step] = []
    WIRE.recent, WIRE.media = [], set()
    at = AppTest.from_file(ENTRY, default_timeout=900)
    at.session_state["model_name"] = model
    at.run()
    at.switch_page(PAGES[page]).run()  # on the sample: models and image-independent tables warm
    WIRE.bytes_of_run()
    _widget(at, "radio", "image_source").set_value("Upload")
    _timed(at, model, page, "source → Upload", steps, profile)
    _widget(at, "file_uploader", "upload_widget").upload(f"photo_{seed}.jpg", variant(model, seed), "image/jpeg")
    _timed(at, model, page, "new image", steps, profile)
    _timed(at, model, page, "rerun, nothing new", steps, profile)
    for what, change in CHANGES.get(page, []):
        try:
            widget = change(at)
        except LookupError as exc:
            steps.append(Step(model, page, what, 0, 0, 0, 0, f"skipped: {exc}"))
            continue
        fragment = fragment_of(widget)
        _timed(
            at, model, page, what + (" (fragment)" if fragment else ""), steps, profile, widget if fragment else None
        )
        if fragment:  # AppTest keeps only the fragment's elements: a full run (not counted) shows the page again
            at.run()
            WIRE.bytes_of_run()
    return steps


def _table(steps: list[Step]) -> str:
    lines = [
        "| model | page | step | CPU s | wall s | sent kB | raw kB | errors |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for s in steps:
        lines.append(
            f"| {s.model} | {s.page} | {s.what} | {s.cpu:.2f} | {s.wall:.2f} | {s.sent / 1e3:.0f} | "
            f"{s.raw / 1e3:.0f} | {s.error} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--pages", nargs="+", default=list(PAGES), choices=list(PAGES))
    parser.add_argument("--threads", type=int, default=1, help="PyTorch threads (1: the server's share of one core)")
    parser.add_argument("--profile", help="print a pyinstrument profile of steps starting with this text")
    parser.add_argument("--seed", type=int, default=0, help="first photo variant's seed (a new one per page)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    _record_messages()
    _run_the_entry_script_every_time()
    if args.profile:
        _profile_script_runs()
    steps: list[Step] = []
    seed = args.seed
    for model in args.models:
        for page in args.pages:
            seed += 1
            done = student(model, page, seed, args.profile)
            print("\n".join(_table(done).splitlines()[2:]), flush=True)
            steps += done
    print(f"\nload average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}; torch threads {args.threads}\n")
    print(_table(steps))


if __name__ == "__main__":
    main()
