"""Streamlit caching around the backend (app/ itself never imports Streamlit).

- Models: `st.cache_resource`, one copy per process whatever the number of sessions.
- Per-image results: keyed by `input_key` (hash of the image bytes + how it was
  turned into the model input) and the analysis parameters, so moving a widget
  that only changes the display never recomputes a forward pass. The input tensor
  is not hashed: it is a pure function of the key. Analyses that report progress
  go through `ResultStore` (see app/lru.py for why not st.cache_data).
- Analyses are handed over as the function itself (`analysis(occlusion_map, ...)`):
  the key is built from its module and qualified name, so a typo fails at import.
Sizes are bounded (max_entries / ttl) so a class of 30 cannot exhaust memory.
"""

from __future__ import annotations

import inspect
import secrets
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import numpy as np
import streamlit as st
import torch

from app.activations import activations
from app.errors import LensError
from app.loaded import LoadedModel
from app.lru import ResultStore
from app.models import MODEL_NAMES, get_model_or_untrained
from app.progress import Progress

T = TypeVar("T")


@st.cache_resource(show_spinner="Loading the models (first visit only)…")
def _shared_models() -> dict[str, tuple[LoadedModel, str | None]]:
    """Both shipped models, loaded together: loading traces them with torch.fx, which must
    not overlap a forward pass in another session (see app/activations.py)."""
    return {name: get_model_or_untrained(name) for name in MODEL_NAMES}


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


@st.cache_data(max_entries=256, ttl=3600, show_spinner="Running the network on your image…")
def logits(model_key: str, input_key: str, _x: torch.Tensor) -> np.ndarray:
    return model(model_key)[0].logits(_x)[0].numpy()


@st.cache_resource(max_entries=6, ttl=1800, show_spinner="Computing every layer's output…")
def layer_outputs(model_key: str, input_key: str, _x: torch.Tensor) -> dict[str, np.ndarray]:
    """Every layer's output for one image, kept as float16 to halve memory (display only)."""
    out = activations(model(model_key)[0], _x)
    return {name: t[0].numpy().astype(np.float16) for name, t in out.items()}


@st.cache_resource
def _results() -> ResultStore:
    """One bounded result store per process, shared by all sessions (keys include the image hash)."""
    return ResultStore(max_entries=128, ttl=3600)


@st.cache_resource
def _data_results() -> ResultStore:
    """Data-set-sized results (maps of 10,000 points, a collection's features): fewer, larger entries."""
    return ResultStore(max_entries=24, ttl=3600)


def shared(key: tuple[Hashable, ...], compute: Callable[[], T]) -> T:
    """`compute()` once per key for all sessions, then served from memory.

    For data-set-sized results rather than one analysis of one image (a data set's map, a
    collection's features): the key must name everything the result depends on, the model
    key included. Concurrent askers wait for the one computation (ResultStore.get_or_compute).
    """
    return _data_results().get_or_compute(key, compute)


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
    key = (func.__module__, func.__qualname__, model_key, input_key, tuple(sorted(params.items())))
    return _results().get_or_compute(key, lambda: func(model(model_key)[0], x, **kwargs))
