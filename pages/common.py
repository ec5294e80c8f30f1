"""What every page shares: the current selection (model, image, model input).

The sidebar widgets live in streamlit_app.py and store their values in
session state; `selection()` turns them into a validated, cached model input,
so every page sees the same image and no page handles raw uploads itself.
"""

from __future__ import annotations

import io
import secrets
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np
import streamlit as st
import torch
from PIL import Image

from app.base.errors import LensError
from app.base.numeric import softmax
from app.networks.collections import TeacherCollection
from app.networks.fashion import fashion_input, looks_like_fashion_mnist
from app.networks.images import Collection, image_key, load_collection, load_image
from app.networks.loaded import LoadedModel, PreprocessStep
from app.networks.models import MODEL_NAMES, OFFLINE_IMAGENET
from app.serving import jobs
from app.serving.progress import Progress
from pages import cache

# Session-state keys that more than one file reads or writes (the sidebar in
# streamlit_app.py, this module, the Live training page): one name each.
MODEL_CHOICE = "model_name"  # the sidebar's model: a shipped model's registry name
IMAGE_SOURCE = "image_source"  # the sidebar's image source: Sample, Upload or Camera
IMAGE_BYTES = "image_bytes"  # the chosen image's bytes (memory only)
FASHION_INTAKE = "fashion_intake"  # how to read an image for the Fashion model (INTAKE's keys)
SESSION_MODEL = "session_model"  # a network trained on the Live training page, if the user chose it
SESSION_MODEL_KEY = "session_model_key"  # its key in pages.cache
UNIT_LINK = "units_link"  # (model key, layer, channel) that opens "What units look for" on one unit; read once

# (model key, layer, channel) that another page hands to the Dreams page's feature visualisation
DREAM_UNIT_KEY = "dream_unit"

INTAKE = {
    "auto": "Auto-detect",
    "photo": "Photo: convert to Fashion-MNIST style",
    "dataset": "Already Fashion-MNIST style",
}
INTAKE_LABEL = "How to read the image"  # the sidebar radio of INTAKE; error hints refer to it by name


@dataclass(frozen=True)
class Selection:
    model_key: str  # a shipped model's name, or the key of a network trained in this session
    model: LoadedModel
    image: Image.Image
    steps: list[PreprocessStep]
    x: torch.Tensor
    input_key: str  # hash of image bytes + model + intake: the cache key of every analysis
    intake: str = ""  # Fashion model only: "photo" or "dataset"

    @property
    def image_key(self) -> str:
        """Hash of the image bytes alone (input_key without model and intake), as app.networks.images.image_key."""
        return self.input_key.partition(":")[0]

    def analysis(self, func: Callable[..., Any], progress: Progress | None = None, **params: Hashable) -> Any:
        """`func(model, x, **params)` for this image, computed once and shared (pages.cache.analysis)."""
        return cache.analysis(func, self.model_key, self.input_key, self.x, progress=progress, **params)

    def has(self, func: Callable[..., Any], **params: Hashable) -> bool:
        """Whether `analysis(func, **params)` is already computed (no wait, no need to ask first)."""
        return cache.has_analysis(func, self.model_key, self.input_key, **params)

    def logits(self) -> np.ndarray:
        return cache.logits(self.model_key, self.input_key, self.x)

    def probabilities(self) -> np.ndarray:
        """Softmax of the cached logits: what every page labels classes with."""
        return softmax(self.logits())


# Decoded images are kept at most this large: every analysis works at 224 px or less, and a
# 6000x4000 photo held at full size costs 72 MB per entry (and 2.6 s per Zalando conversion,
# measured on the busy 2-core development machine, against 0.1 s at this size).
WORK_SIDE = 1024


@st.cache_resource(max_entries=16, ttl=3600, show_spinner=False)
def _decode(key: str, _data: bytes) -> Image.Image:
    """The upload, decoded once per image (keyed by its hash) and shrunk to WORK_SIDE; read-only."""
    image = load_image(_data)
    image.thumbnail((WORK_SIDE, WORK_SIDE), Image.Resampling.LANCZOS)
    return image


def preview(data: bytes, side: int = 160) -> Image.Image | None:
    """A small copy of a chosen image for the sidebar, or None when it cannot be decoded (pages say why)."""
    try:
        image = _decode(image_key(data), data)
    except LensError:
        return None
    small = image.copy()
    small.thumbnail((side, side))
    return small


@st.cache_resource(max_entries=32, ttl=3600, show_spinner="Preparing your image for the network…")
def _prepare(
    model_key: str, input_key: str, intake: str, _model: LoadedModel, _image: Image.Image
) -> tuple[list[PreprocessStep], torch.Tensor]:
    """Pre-processing steps and model input, once per (model, image, intake), not once per page visit."""
    if intake:
        return fashion_input(_model, _image, intake)
    steps = _model.preprocess_steps(_image)
    return steps, _model.to_tensor(steps[-1].image)


def _session_network(name: str, notice: bool = True) -> tuple[str, LoadedModel] | None:
    """The network this user trained on the Live training page, if they chose to use it."""
    net = st.session_state.get(SESSION_MODEL) if name == "fashion_cnn" else None
    if net is None:
        return None
    key = st.session_state.get(SESSION_MODEL_KEY)
    if key is None or cache.session_model(key) is not net:
        key = cache.register_session_model(net)
        st.session_state[SESSION_MODEL_KEY] = key
    if notice:
        st.info(f"Showing **{net.title}** ({net.weights}). Go back to the shipped one on the Live training page.")
    return key, net


def current_model(warn: bool = True) -> tuple[str, LoadedModel]:
    """(cache key, model): the sidebar's model, or the user's own trained network.

    warn: show the missing-weights warning (False where the page has shown it already).
    """
    name = st.session_state.get(MODEL_CHOICE) or default_model()
    own = _session_network(name, notice=warn)
    if own is not None:
        return own
    loaded, warning = cache.model(name)
    retry = cache.retry_weights(name) if warning else ""
    if retry == "ready":  # the weights arrived since the last run: the trained network from now on
        loaded, warning = cache.model(name)
    if warning and warn:
        _untrained_banner(name, loaded, warning, retry)
    return name, loaded


def _untrained_banner(name: str, loaded: LoadedModel, warning: str, retry: str) -> None:
    """One line a student can read; what went wrong and how to fix it behind an expander for the teacher."""
    offline = ""
    if (
        loaded.channels == 3
        and name != OFFLINE_IMAGENET
        and OFFLINE_IMAGENET in cache.offered()
        and cache.model(OFFLINE_IMAGENET)[0].trained
    ):
        offline = (
            f" For real ImageNet predictions without a download, choose **{MODEL_NAMES[OFFLINE_IMAGENET]}** "
            "in the sidebar: its trained weights ship with the app."
        )
    st.warning(
        f"This {loaded.title} has **not been trained**: it shows what a network with random weights does, "
        f"not what it learned.{offline}",
        icon=":material/warning:",
    )
    with st.expander("Details for the teacher"):
        st.markdown(
            {
                "trying": "The app is trying the download again in the background; reload this page in a few "
                "minutes to use the trained network.",
                "failed": "The app tried the download again and it failed too: " + (cache.retry_error(name) or ""),
                "": "",
            }[retry]
        )
        st.caption(f"When the app started: {warning}")


def _intake(model: LoadedModel, image: Image.Image) -> str:
    """How the sidebar says to read the image: "photo" or "dataset" for the Fashion model, else ""."""
    if model.name != "fashion_cnn":  # the shipped network or one trained in this session
        return ""
    intake = st.session_state.get(FASHION_INTAKE, "auto")
    if intake == "auto":
        intake = "dataset" if looks_like_fashion_mnist(image) else "photo"
    return intake


def for_model(sel: Selection, name: str) -> Selection:
    """The same image prepared for another shipped or configured model, exactly as `selection()` would
    prepare it if that model were chosen in the sidebar. Raises LensError when the image does not suit
    that model (e.g. a photo the Fashion conversion cannot read)."""
    if name == sel.model_key:
        return sel
    model = cache.model(name)[0]
    intake = _intake(model, sel.image)
    input_key = f"{sel.image_key}:{name}:{intake}"
    steps, x = _prepare(name, input_key, intake, model, sel.image)
    return Selection(name, model, sel.image, steps, x, input_key, intake)


def default_model() -> str:
    """VGG-16 when it is offered and its pretrained weights are here, else the ImageNet model that
    works offline, else the first model the server offers."""
    offered = cache.offered()
    if "vgg16" in offered and not cache.model("vgg16")[1]:
        return "vgg16"
    return OFFLINE_IMAGENET if OFFLINE_IMAGENET in offered else offered[0]


def selection(warn: bool = True) -> Selection:
    """The current model and image; stops the page with a hint when no image is chosen.

    warn: show the model's notices (missing weights, own network); False where the page did already.
    """
    name, model = current_model(warn)
    data: bytes | None = st.session_state.get(IMAGE_BYTES)
    if not data:
        st.info(
            "Choose an image in the sidebar: a sample, your own upload, or a camera shot.", icon=":material/arrow_back:"
        )
        st.stop()
    key = image_key(data)
    try:
        image = _decode(key, data)
    except LensError as exc:
        st.error(str(exc), icon=":material/error:")
        st.stop()
    intake = _intake(model, image)
    input_key = f"{key}:{name}:{intake}"
    try:
        steps, x = _prepare(name, input_key, intake, model, image)
    except LensError as exc:
        hint = (
            f" If the image is already in Fashion-MNIST style (a light object on black), choose "
            f"“{INTAKE['dataset']}” under “{INTAKE_LABEL}” in the sidebar."
            if intake == "photo"
            else ""
        )
        st.error(str(exc) + hint, icon=":material/error:")
        st.stop()
    return Selection(name, model, image, steps, x, input_key, intake)


def what_the_model_knows(model: LoadedModel) -> str:
    """What a student must know before trusting a prediction: the network can only answer with its classes."""
    n = len(model.labels)
    kinds = (
        f"the {n} kinds of clothing of Fashion-MNIST ({', '.join(model.labels)}), photographed alone on a plain "
        "background"
        if model.name == "fashion_cnn"
        else f"the {n:,} ImageNet classes (mostly animals and objects)"
    )
    return (
        f"This network only knows {kinds}. It must answer with one of them for any image, even a picture of "
        "something else, so a high probability does not mean the image shows that class."
    )


def page(title: str, intro: str) -> Selection:
    """How an analysis page opens: the checked selection, the page's title and a line on what it shows."""
    sel = selection()
    st.title(title)
    st.caption(intro)
    return sel


def class_picker(sel: Selection, label: str, key: str) -> int:
    """A searchable class choice that starts at the network's prediction, with every class's probability."""
    probs = sel.probabilities()
    predicted = int(np.argmax(probs))
    labels = sel.model.labels
    return st.selectbox(
        label,
        range(len(labels)),
        index=predicted,
        format_func=lambda i: f"{labels[i]} ({probs[i]:.1%})" + (" · predicted" if i == predicted else ""),
        key=key,
        help="Type to search. Defaults to the network's prediction.",
    )


def download_pair(stem: str, picture: np.ndarray, values: np.ndarray, key: str, what: str) -> None:
    """Two buttons side by side that say which map they save: the picture as shown (PNG) and the raw
    values behind it (.npy). `what` names the map ("probability map"); buttons that said only "PNG" and
    ".npy", a column apart, left a teacher guessing which figure they belonged to."""
    stem = stem.replace(" ", "_").replace("/", "-")
    with st.container(horizontal=True):
        st.download_button(
            f"{what[:1].upper()}{what[1:]} (PNG)",
            png_bytes(picture),
            f"{stem}.png",
            "image/png",
            key=f"{key}_png",
            on_click="ignore",
            icon=":material/download:",
        )
        st.download_button(
            "its values (.npy)",
            npy_bytes(values),
            f"{stem}.npy",
            "application/octet-stream",
            key=f"{key}_npy",
            on_click="ignore",
            icon=":material/download:",
        )


def png_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def npy_bytes(values: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, values)
    return buf.getvalue()


# Work expected to take longer than this asks first: the estimate is shown and an explicit
# button starts it; while it runs it shows progress and a Cancel button.
LONG_RUN_SECONDS = 3.0


def confirm_long_run(seconds: float, what: str, button: str, key: str) -> None:
    """Stop the page until the user asks for work estimated at over LONG_RUN_SECONDS; return at once if shorter."""
    if seconds <= LONG_RUN_SECONDS:
        return
    slot = st.empty()
    with slot.container():
        st.warning(
            f"{what} takes about {seconds:.0f} s (an estimate: other users share the computer).",
            icon=":material/timer:",
        )
        if not st.button(button, type="primary", key=key):
            st.stop()
    slot.empty()  # started: the progress bar takes over


def progress_bar(text: str, unit: str = "") -> tuple[Progress, Callable[[], None]]:
    """A progress callback that shows a bar, with an estimate of the time left, only once work really
    starts (a cached step shows nothing), and a function that removes the bar again."""
    slot, start = st.empty(), time.monotonic()
    unit = f" {unit}" if unit else ""

    def report(done: int, total: int) -> None:
        elapsed = time.monotonic() - start
        left = f", about {elapsed * (total - done) / done:.0f} s left" if 0 < done < total else ""
        slot.progress(min(done / max(total, 1), 1.0), text=f"{text} ({done:,}/{total:,}{unit}{left})")

    return report, slot.empty


@st.cache_resource(max_entries=2, ttl=3600, show_spinner=False)  # up to 500 images of 512 px: ~375 MB each
def _collection(files: tuple[tuple[str, bytes], ...]) -> Collection:
    return load_collection(files)


def collection_upload(key: str, help: str, empty: str) -> Collection:
    """The user's own image collection (files or a .zip), decoded once for every page that uses it;
    stops the page with `empty` until there is one, and lists the files that were left out."""
    uploads = st.file_uploader(
        "Images (2–500), or a .zip of them",
        type=["png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff", "zip"],
        accept_multiple_files=True,
        key=key,
        help=help,
    )
    if not uploads:
        st.info(empty)
        st.stop()
    collection = _collection(tuple((u.name, u.getvalue()) for u in uploads))
    if collection.skipped:
        with st.expander(f"{len(collection.skipped)} file(s) left out"):
            st.write("\n".join(f"- {s.name}: {s.reason}" for s in collection.skipped))
    return collection


TEACHER_SOURCE = "{} (teacher's collection)"  # how a teacher's collection is offered in a data-set chooser


def teacher_sources(model: LoadedModel) -> dict[str, str]:
    """{chooser label: name} of the teacher's collections this network can take. They are colour photos, so
    every ImageNet network takes them and a Fashion-MNIST network (28x28 grey input) none: a note says so."""
    names = list(cache.teacher_collections())
    if names and model.channels == 1:
        st.caption(
            f"The teacher's collections ({', '.join(names)}) are colour photos; this network only takes 28×28 "
            "grey images, so they are offered with the ImageNet networks (choose one in the sidebar)."
        )
        return {}
    return {TEACHER_SOURCE.format(name): name for name in names}


def teacher_collection(name: str) -> TeacherCollection:
    """A teacher's collection, with the files that were left out listed (as for an upload)."""
    loaded = cache.teacher_collection(name, str(cache.teacher_collections()[name]))
    if loaded.collection.skipped:
        with st.expander(f"{len(loaded.collection.skipped)} file(s) of {name} left out"):
            st.write("\n".join(f"- {s.name}: {s.reason}" for s in loaded.collection.skipped))
    return loaded


def cancel_button(key: str) -> Callable[[], None]:
    """A Cancel button to draw just before a long computation with progress: clicking it reruns the page,
    and Streamlit stops the running computation at its next progress update. Returns what removes it."""
    slot = st.empty()
    slot.button("Cancel", key=key, icon=":material/cancel:")
    return slot.empty


# Work estimated at more than this goes through the server's job queue (app.serving.jobs.HEAVY) rather
# than running in the page's own thread: fair between students, at a lower priority than page views.
QUEUE_SECONDS = 1.0


def long_analysis(
    sel: Selection, func: Callable[..., Any], seconds: float, what: str, button: str, key: str, steps: str, **params
) -> Any:
    """An analysis that may take a while: asks first when estimated over LONG_RUN_SECONDS, then shows
    progress ("<steps>: i of n") and a Cancel button while it runs. Keys: <key>_start and <key>_cancel.

    Estimated over QUEUE_SECONDS, it runs as a job of the server's fair queue (shared with anyone asking
    for the very same thing) while this page waits for it, showing its place in the queue; leaving the
    page or pressing Cancel stops this person's watch, and the job with it when nobody else watches."""
    if sel.has(func, **params):
        return sel.analysis(func, **params)
    confirm_long_run(seconds, what, button, key=f"{key}_start")
    remove_cancel = cancel_button(f"{key}_cancel")
    bar = st.progress(0.0, text=what)
    if seconds <= QUEUE_SECONDS:
        result = sel.analysis(func, progress=lambda i, n: bar.progress(i / n, text=f"{steps}: {i} of {n}"), **params)
    else:
        result = _wait_in_queue(sel, func, what, steps, bar, **params)
    bar.empty()
    remove_cancel()
    return result


def student() -> str:
    """This browser session's anonymous id: the job queue takes students in turn and limits each by it."""
    return st.session_state.setdefault("student_id", secrets.token_hex(8))


def _request(sel: Selection, func: Callable[..., Any], params: dict[str, Hashable]) -> tuple:
    """What identifies a queued analysis's result: identical requests from several sessions share one job."""
    return (func.__module__, func.__qualname__, sel.model_key, sel.input_key, tuple(sorted(params.items())))


def _submit(sel: Selection, func: Callable[..., Any], what: str, **params: Hashable) -> jobs.Job:
    """The analysis as a job of the fair queue; stops the page with a way out when this person has
    their share of jobs already (jobs.TooManyJobs)."""
    work = cache.analysis_work(func, sel.model_key, sel.input_key, sel.x, **params)
    try:
        return jobs.submit(
            lambda j: work(j.report),
            what,
            key=_request(sel, func, params),
            abandon_after=jobs.WATCH_TIMEOUT,
            owner=student(),
        )
    except jobs.TooManyJobs as exc:
        too_many_jobs(exc)
        st.stop()


def too_many_jobs(exc: jobs.TooManyJobs) -> None:
    """Why nothing starts, and a button that cancels this person's waiting job (or their oldest) to make room."""
    st.warning(str(exc), icon=":material/hourglass_top:")
    waiting = [job for job in exc.jobs if job.state == "waiting"] or exc.jobs[:1]
    st.button(
        f"Cancel “{waiting[0].label}”",
        key="cancel_waiting_job",
        on_click=waiting[0].cancel,
        args=(student(),),
        icon=":material/cancel:",
    )


def _queue_words(job: jobs.Job) -> str:
    place = job.position()
    return (
        f"Waiting for a free slot: {job.slots.running} heavy job(s) are running on this server"
        + (f" and you are number {place} in the queue" if place else "")
        + ". Yours starts by itself."
    )


def _wait_in_queue(sel: Selection, func: Callable[..., Any], what: str, steps: str, bar: Any, **params) -> Any:
    """Submit and wait here, drawing the queue place or progress; a rerun (Cancel, another widget, the tab
    closed) interrupts the wait, and this person stops watching the job."""
    job = _submit(sel, func, what, **params)
    try:
        while job.active:
            job.touch()
            if job.state == "waiting":
                bar.progress(0.0, text=_queue_words(job))
            elif job.total:
                bar.progress(job.fraction(), text=f"{steps}: {job.done} of {job.total}")
            time.sleep(0.25)
    except BaseException:  # Streamlit stops this run at the next element: nobody here watches any more
        job.cancel(student())
        raise
    if job.state == "failed":
        st.error(f"{what} failed: {job.error}", icon=":material/error:")
        st.stop()
    if job.state == "cancelled":  # everyone who watched left, or it was abandoned: ask again
        st.rerun()
    return job.result


def model_input_rgb(sel: Selection) -> Image.Image:
    """The picture the network actually sees (after resize/crop), for overlays."""
    return sel.steps[-1].image.convert("RGB")


def show_lens_error(exc: LensError) -> None:
    st.error(str(exc), icon=":material/error:")


def _queued_jobs() -> dict[str, tuple[tuple, jobs.Job]]:
    """This session's queued analyses: {page key: (what was asked, its job)}."""
    return st.session_state.setdefault("queued_analyses", {})


def _stop_watching(key: str) -> None:
    """This person cancels; the job stops unless another session asked for the very same thing."""
    _, job = _queued_jobs().pop(key, (None, None))
    if job is not None:
        job.cancel(student())


def queued_analysis(
    sel: Selection, func: Callable[..., Any], seconds: float, what: str, button: str, key: str, **params: Hashable
) -> Any:
    """A heavy analysis run through the server's job queue (app.serving.jobs.HEAVY), shared with the dreams
    and live training, so a class pressing the button together does not starve the server.

    Returns the result at once when it is cached. Otherwise asks first when estimated over
    LONG_RUN_SECONDS, then shows the place in the queue, progress and a Cancel button, and stops the
    page until the job is done (the page reruns by itself then). Identical requests from several
    sessions share one job; a job whose page was closed is dropped after jobs.WATCH_TIMEOUT.
    Key: <key>_start for the start button.
    """
    if sel.has(func, **params):
        return sel.analysis(func, **params)
    running = _queued_jobs()
    request = _request(sel, func, params)
    asked, job = running.get(key, (None, None))
    if job is not None and (asked != request or job.state in ("cancelled", "failed")):
        if asked != request and job.active:  # the user moved on to another image or model
            job.cancel(student())
        elif job.state == "failed":
            st.error(f"{what} failed: {job.error}", icon=":material/error:")
        running.pop(key)
        job = None
    if job is None:
        confirm_long_run(seconds, what, button, key=f"{key}_start")
        job = _submit(sel, func, what, **params)
        running[key] = (request, job)
    if job.state == "finished":
        return job.result
    _watch(job, key, what)
    st.stop()


def _watch(job: jobs.Job, key: str, what: str) -> None:
    """Queue place or progress of a running job, polled every 1.5 s; the whole page reruns when it ends."""

    @st.fragment(run_every=1.5)
    def live() -> None:
        if key not in _queued_jobs():  # cancelled here (another session may still be watching the job)
            st.rerun()
        job.touch()
        if job.state == "waiting":
            st.info(_queue_words(job), icon=":material/hourglass_top:")
        elif job.state == "running":
            eta = job.eta()
            st.progress(
                job.fraction(),
                text=f"{what}: step {job.done} of {job.total}" + (f", about {eta:.0f} s left" if eta else ""),
            )
        if job.active:
            st.button("Cancel", key=f"{key}_cancel", on_click=_stop_watching, args=(key,), icon=":material/cancel:")
        else:
            st.rerun()

    live()
