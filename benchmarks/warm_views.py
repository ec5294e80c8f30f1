"""How long a fresh server's first visitor waits for the views `make warm` prepared.

    CNN_LENS_CACHE=... CNN_LENS_COLLECTIONS=... .venv/bin/python -m benchmarks.warm_views

Run it after `python -m scripts.warm_cache` with the same settings, in a new process: the
models are loaded first (a server does that before its first page, see class-load), then
each page is opened once in Streamlit's AppTest with the model's first sample image, as a
first visitor opens it: What units look for on every model (its default data set, then each
teacher's collection), and Feature space on each collection. Printed per view: wall seconds,
the process's CPU seconds over the same run, and the load average (this CPU may be shared).
AppTest itself costs CPU on every run (it scans the installed packages for components, about
3 s of wall time under load; a server does that once, at start): a page that only writes one
line is timed first, and its CPU-s are what to subtract.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import streamlit as st
from streamlit.testing.v1 import AppTest

from app.networks.collections import collection_folders
from app.networks.samples import sample_bytes, samples
from pages import cache
from pages.common import TEACHER_SOURCE

PAGES = Path(__file__).resolve().parent.parent / "pages"


def timed_run(at: AppTest, label: str) -> None:
    """Run the page once and print its wall time, the process's CPU-s and the load average."""
    start, cpu = time.perf_counter(), time.process_time()
    at.run(timeout=1200)
    wall, used = time.perf_counter() - start, time.process_time() - cpu
    problems = [e.value for e in at.exception]
    load = os.getloadavg()[0]
    print(
        f"{label:<60} {wall:6.2f} s wall {used:6.2f} CPU-s  load {load:.1f}"
        + (f"  ERROR {problems}" if problems else "")
    )


def page(name: str, model: str) -> AppTest:
    at = AppTest.from_file(str(PAGES / name), default_timeout=1200)
    at.session_state["model_name"] = model
    at.session_state["image_bytes"] = sample_bytes(samples(model)[0])
    return at


def main() -> None:
    start = time.perf_counter()
    models = cache._shared_models()  # what a server loads before its first page
    print(f"models loaded in {time.perf_counter() - start:.1f} s: {', '.join(models)}")
    collections = list(collection_folders())
    timed_run(AppTest.from_string("import streamlit as st\nst.write('x')"), "AppTest's own cost (a one-line page)")
    for model in models:
        at = page("units.py", model)
        timed_run(at, f"What units look for, {model}, default data set")
        if model == "fashion_cnn":
            continue
        for name in collections:
            at.radio(key=f"units_source_{model}").set_value(TEACHER_SOURCE.format(name))
            timed_run(at, f"What units look for, {model}, collection {name}")
    for model in models:
        if model != "fashion_cnn" and collections:  # the first collection is the page's default data set
            timed_run(page("feature_space.py", model), f"Feature space, {model}, collection {collections[0]}")
    st.cache_resource.clear()


if __name__ == "__main__":
    main()
