"""Streamlit caching around the backend (app/ itself never imports Streamlit).

- Models: `st.cache_resource`, one copy per process whatever the number of sessions.
- Per-image results: keyed by `input_key` (hash of the image bytes + how it was
  turned into the model input) and the analysis parameters, so moving a widget
  that only changes the display never recomputes a forward pass. The input tensor
  is not hashed: it is a pure function of the key. Analyses that report progress
  go through `ResultStore` (see app/serving/lru.py for why not st.cache_data).
- Analyses are handed over as the function itself (`analysis(occlusion_map, ...)`):
  the key is built from its module and qualified name, so a typo fails at import.
Sizes are bounded (max_entries / ttl) so a class of 30 cannot exhaust memory.
"""

from __future__ import annotations

import inspect
import os
import secrets
import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import numpy as np
import streamlit as st
import torch

from app.analyses import dataset_examples as D
from app.base.errors import LensError
from app.networks.activations import activations
from app.networks.loaded import LoadedModel
from app.networks.models import (
    MODEL_NAMES,
    VGG_ENV,
    fetch_vgg16_weights,
    get_model,
    get_model_or_untrained,
    model_names,
)
from app.serving.lru import ResultStore
from app.serving.progress import Progress

T = TypeVar("T")


@st.cache_resource(show_spinner="Loading the models (first visit only)…")
def _shared_models() -> dict[str, tuple[LoadedModel, str | None]]:
    """Every shipped model (and the teacher's configured ones), loaded together: loading traces
    them with torch.fx, which must not overlap a forward pass in another session (see
    app/networks/activations.py). A broken config file leaves out only the configured models."""
    try:
        names = model_names()
    except LensError:
        names = MODEL_NAMES
    return {name: get_model_or_untrained(name) for name in names}


@st.cache_resource
def _session_models() -> ResultStore:
    """Networks users trained in the browser, under unguessable keys; bounded and expiring."""
    return ResultStore(max_entries=16, ttl=4 * 3600)


def register_session_model(net: LoadedModel) -> str:
    """Key under which the analyses find a session's own network ("fashion_cnn@<random>")."""
    key = f"{net.name}@{secrets.token_hex(8)}"
    _session_models().put(key, net)
    return key


def session_model(key: str) -> LoadedModel | None:
    hit, net = _session_models().get(key)
    return net if hit else None


def model(key: str) -> tuple[LoadedModel, str | None]:
    """(model, warning) for a shipped model name or a session key; the warning explains a fallback."""
    if "@" in key:
        net = session_model(key)
        if net is None:
            raise LensError("Your trained network has expired; train it again on the Live training page.")
        return net, None
    return _shared_models()[key]


_retry_lock = threading.Lock()
_retries: dict[str, threading.Thread] = {}
_retry_errors: dict[str, str] = {}
_retry_results: dict[str, LoadedModel] = {}


def retry_weights(name: str) -> str:
    """Try once per process, in the background, to fetch a shipped model's missing weights.

    `make run` tries the download before the server starts; when that failed (no internet
    yet, a proxy), the first page that shows the untrained fallback tries again without
    blocking: the server is reached with a timeout and the download runs in a thread. The
    first page run that sees it arrive swaps the shared model for the trained one and drops
    every cached result, since those were computed with the random weights under the same keys.
    Returns "trying", "failed" (reason in `retry_error`), "ready" or "" (nothing to fetch).
    """
    if name != "vgg16" or os.environ.get(VGG_ENV):  # a teacher's own weights file: nothing to download
        return ""
    with _retry_lock:
        thread = _retries.get(name)
        if thread is None:

            def attempt() -> None:
                try:
                    fetch_vgg16_weights()
                    _retry_results[name] = get_model(name)
                except LensError as exc:
                    _retry_errors[name] = str(exc)

            thread = _retries[name] = threading.Thread(target=attempt, daemon=True, name="cnn-lens-weights")
            thread.start()
        if thread.is_alive():
            return "trying"
        loaded = _retry_results.pop(name, None)
        if loaded is not None:
            _shared_models()[name] = (loaded, None)
            for store in (_results(), _data_results(), _unit_results()):
                store.clear()
            logits.clear()
            layer_outputs.clear()
    return "failed" if name in _retry_errors else "ready"


def retry_error(name: str) -> str | None:
    return _retry_errors.get(name)


@st.cache_data(max_entries=256, ttl=3600, show_spinner="Running the network on your image…")
def logits(model_key: str, input_key: str, _x: torch.Tensor) -> np.ndarray:
    return model(model_key)[0].logits(_x)[0].numpy()


# Memory budgets (issue 15: one person exploring for 15 minutes took a replica past its 3 GB).
# A replica holds about 1.5 GB after its first visit (docs/HOSTING.md); these caches add at
# most ~0.9 GB on top: 4 x 55 MB of VGG-16 layer outputs, 300 MB of per-image results,
# 400 MB of data-set maps (one Fashion-MNIST test-set map is 43-60 MB).
RESULTS_BYTES = 300 * 2**20
DATA_RESULTS_BYTES = 400 * 2**20


@st.cache_resource(max_entries=4, ttl=1800, show_spinner="Computing every layer's output…")
def layer_outputs(model_key: str, input_key: str, _x: torch.Tensor) -> dict[str, np.ndarray]:
    """Every layer's output for one image, kept as float16 to halve memory (display only)."""
    out = activations(model(model_key)[0], _x)
    return {name: t[0].numpy().astype(np.float16) for name, t in out.items()}


@st.cache_resource
def _results() -> ResultStore:
    """One bounded result store per process, shared by all sessions (keys include the image hash)."""
    return ResultStore(max_entries=128, ttl=3600, max_bytes=RESULTS_BYTES)


@st.cache_resource
def _unit_results() -> ResultStore:
    """A unit's nine examples (and their pictures) and a layer's overview: many small entries, kept apart
    from the data-set store so browsing units never evicts a data set's table."""
    return ResultStore(max_entries=128, ttl=3600)


def unit_result(key: tuple[Hashable, ...], compute: Callable[[], T]) -> T:
    """`compute()` once per key for all sessions: the What units look for page's per-unit pictures."""
    return _unit_results().get_or_compute(key, compute)


@st.cache_resource
def _data_results() -> ResultStore:
    """Data-set-sized results (maps of 10,000 points, a collection's features): fewer, larger entries."""
    return ResultStore(max_entries=24, ttl=3600, max_bytes=DATA_RESULTS_BYTES)


def shared(key: tuple[Hashable, ...], compute: Callable[[], T]) -> T:
    """`compute()` once per key for all sessions, then served from memory.

    For data-set-sized results rather than one analysis of one image (a data set's map, a
    collection's features): the key must name everything the result depends on, the model
    key included. Concurrent askers wait for the one computation (ResultStore.get_or_compute).
    """
    return _data_results().get_or_compute(key, compute)


def has_shared(key: tuple[Hashable, ...]) -> bool:
    """Whether `shared(key, ...)` would answer from memory, so a page can warn before a long computation."""
    return _data_results().get(key)[0]


def analysis(
    func: Callable[..., Any],
    model_key: str,
    input_key: str,
    x: torch.Tensor,
    progress: Progress | None = None,
    **params: Hashable,
) -> Any:
    """Run `func(model, x, **params)` once per (image, params), then serve it from memory.

    `func` is an analysis from app/. Parameters must be hashable plain values (numbers,
    strings, tuples). The result is shared between sessions that ask for the same thing:
    treat it as read-only. `progress(done, total)` is passed to functions that accept it.
    """
    kwargs: dict[str, Any] = dict(params)
    if progress is not None and "progress" in inspect.signature(func).parameters:
        kwargs["progress"] = progress
    return _results().get_or_compute(
        _analysis_key(func, model_key, input_key, params), lambda: func(model(model_key)[0], x, **kwargs)
    )


def analysis_work(
    func: Callable[..., Any], model_key: str, input_key: str, x: torch.Tensor, **params: Hashable
) -> Callable[[Progress | None], Any]:
    """`analysis(func, ...)` as work for a background job (app.serving.jobs).

    The model and the result store are looked up now, in the page's thread (Streamlit's caches
    belong to it); the returned function may run in any thread, and its result lands under the
    same key as `analysis`, so `has_analysis` and `analysis` find it afterwards.
    """
    net, store, key = model(model_key)[0], _results(), _analysis_key(func, model_key, input_key, params)
    takes_progress = "progress" in inspect.signature(func).parameters

    def run(progress: Progress | None) -> Any:
        kwargs: dict[str, Any] = dict(params)
        if progress is not None and takes_progress:
            kwargs["progress"] = progress
        return store.get_or_compute(key, lambda: func(net, x, **kwargs))

    return run


def _analysis_key(func: Callable[..., Any], model_key: str, input_key: str, params: dict[str, Hashable]) -> tuple:
    return (func.__module__, func.__qualname__, model_key, input_key, tuple(sorted(params.items())))


def has_analysis(func: Callable[..., Any], model_key: str, input_key: str, **params: Hashable) -> bool:
    """Whether `analysis(func, ...)` would answer from memory, so a page need not warn before it."""
    return _results().get(_analysis_key(func, model_key, input_key, params))[0]


def fashion_unit_table(model_key: str, progress: Progress | None = None) -> D.TopTable:
    """Every unit's best Fashion-MNIST test images for this model, once for all sessions (on disk too,
    except for a network trained in a session, whose key has an "@")."""

    def compute() -> D.TopTable:
        net = model(model_key)[0]
        return D.fashion_test_table(net, progress=progress, keep="@" not in model_key)

    return shared(("table", model_key, "fashion"), compute)


def ready_fashion_unit_table(model_key: str) -> D.TopTable | None:
    """The Fashion table if it is at hand without computing it (in memory or on disk), else None."""
    key = ("table", model_key, "fashion")
    if has_shared(key):
        return fashion_unit_table(model_key)
    net = model(model_key)[0]
    if net.name != "fashion_cnn" or "@" in model_key:
        return None
    table = D.stored_fashion_table(net)
    return None if table is None else shared(key, lambda: table)
