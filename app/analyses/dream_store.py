"""Finished dreams kept on disk: each one is made once, ever, and then served to every student.

A feature visualisation costs a minute of CPU; a class told to dream the same unit
would make it thirty times, and again after every restart. Every dream is a pure
function of the network's weights, the kind of dream, its settings and seed, and the
picture it starts from (DeepDream, style transfer), so a finished one is written to
the store of computed results (app/serving/store.py, `$CNN_LENS_CACHE`) under a key
made of exactly those: the weights' digest, `FORMAT_VERSION`, the kind and every
setting, with a starting picture named by the hash of its bytes. Any process or
replica that shares the folder then reads it in milliseconds.

The file is an .npz without pickled objects. One that cannot be read, or holds
something that is not a picture in [0, 1] (cut short by a full disk, written by a
bug), counts as missing: the dream is made again and the file replaced, never shown.
"""

from __future__ import annotations

import contextlib
import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from app.analyses.dreams import Dream
from app.serving.store import Weighed, store_dir, store_key, write_atomic

# Raise when what a stored dream means changes (the recipe, the file's fields): old files are then
# never read, since the key includes it.
FORMAT_VERSION = 1


def dream_path(model: Weighed, kind: str, **settings: Any) -> Path:
    """Where the dream of `model` of this `kind` ("features", "class", "deepdream", "style") with these
    settings is kept. settings: every parameter and the seed, JSON-able (a starting picture by its hash)."""
    key = store_key(model, version=FORMAT_VERSION, kind=f"dream/{kind}", **settings)
    return store_dir() / f"dream_{kind}_{key}.npz"


def to_bytes(dream: Dream) -> bytes:
    arrays = {
        "image": np.asarray(dream.image, dtype=np.float32),
        "meta": np.array([FORMAT_VERSION, dream.steps], dtype=np.int64),
        "seconds": np.array([dream.seconds], dtype=np.float64),
        "history": np.frombuffer(json.dumps(dream.history).encode(), dtype=np.uint8),
    }
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def from_bytes(data: bytes | Path) -> Dream:
    """The dream in a stored file; ValueError when the file is not a whole, sane dream of this format."""
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    with np.load(source, allow_pickle=False) as npz:
        version, steps = (int(v) for v in npz["meta"])
        image = npz["image"]
        seconds = float(npz["seconds"][0])
        history = json.loads(npz["history"].tobytes().decode())
    if version != FORMAT_VERSION:
        raise ValueError(f"a dream of format {version}, not {FORMAT_VERSION}")
    if image.ndim != 3 or image.shape[2] not in (1, 3) or not np.isfinite(image).all():
        raise ValueError("not a picture")
    if image.min() < 0 or image.max() > 1 or steps < 1:
        raise ValueError("pixels outside [0, 1] or no steps")
    if not isinstance(history, dict) or not all(isinstance(v, list) for v in history.values()):
        raise ValueError("no history of the objective")
    return Dream(image, {k: [float(x) for x in v] for k, v in history.items()}, steps, seconds)


def read(path: Path) -> Dream | None:
    """The stored dream, or None when there is none or it is damaged (then it is made again)."""
    if not path.exists():
        return None
    with contextlib.suppress(OSError, ValueError, KeyError, EOFError, UnicodeDecodeError, zipfile.BadZipFile):
        return from_bytes(path)
    return None


def made_once(path: Path | None, make: Callable[[], Dream]) -> Dream:
    """The dream stored at `path`, or `make()` it and store it there (path None: make it, keep nothing,
    e.g. for a network trained in one session). A read-only folder still gives the dream, unkept."""
    if path is not None and (stored := read(path)) is not None:
        return stored
    dream = make()
    if path is not None:
        with contextlib.suppress(OSError):
            write_atomic(path, to_bytes(dream))
    return dream
