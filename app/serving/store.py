"""The on-disk store for results computed once per set of weights (maps, unit tables, collections' features).

Computing a data set's map or a table of every unit's best images takes seconds to
minutes; a class of students would redo it on every visit. So such results are written
to one folder (`make warm` fills it before class), named by a key that changes whenever
the weights, the code's format version or the parameters do, and any process of the app
reads them. One function, `kept`, does this for every kind of result.

Files are written atomically (temporary file, then rename) and made world-readable, so
several app replicas can share the folder. Each file starts with the SHA-256 of its
payload: a file cut short by a full disk, or damaged on it, fails the check and is
recomputed (and rewritten), never decoded and shown.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from app.base.paths import data_dir

T = TypeVar("T")
_MAGIC = b"CNNLENS1"  # file format of the store itself: magic, 32-byte SHA-256 of the payload, payload


class Weighed(Protocol):
    """What a stored result is keyed by: a network's name and the digest of its weights."""

    name: str

    def digest(self) -> str: ...


@dataclass(frozen=True)
class Codec(Generic[T]):
    """How one kind of result becomes bytes and back; `suffix` names the payload's format in the file name."""

    encode: Callable[[T], bytes]
    decode: Callable[[bytes], T]
    suffix: str


def _pickle_bytes(value: Any) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


# Only our own results, computed on the server, are pickled (never a user's upload), and a file is
# only unpickled after its checksum matched what this code wrote.
PICKLE: Codec[Any] = Codec(_pickle_bytes, pickle.loads, "pkl")


def store_dir() -> Path:
    """Where computed results are kept: $CNN_LENS_CACHE, else <data dir>/cache."""
    return Path(os.environ.get("CNN_LENS_CACHE", data_dir() / "cache"))


def store_key(model: Weighed | None = None, **spec: Any) -> str:
    """A file-name-safe key for a result of `model` (its name and weights) and `spec` (JSON-able values).

    spec must name everything else the result depends on (format version, parameters,
    data set, library versions), so a changed computation never reads an old file. A
    result that depends on no network (a collection as decoded) passes no model."""
    full = {**({"model": model.name, "weights": model.digest()} if model is not None else {}), **spec}
    return hashlib.sha256(json.dumps(full, sort_keys=True).encode()).hexdigest()[:32]


def stored_path(kind: str, model: Weighed | None, codec: Codec[Any] = PICKLE, **spec: Any) -> Path:
    """The file a result of this kind, model and spec lives in (whether or not it exists yet)."""
    return store_dir() / f"{kind}_{store_key(model, kind=kind, **spec)}.{codec.suffix}"


def write_atomic(path: Path, payload: bytes) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; other app processes/users read it too
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _sealed(payload: bytes) -> bytes:
    return _MAGIC + hashlib.sha256(payload).digest() + payload


def _unsealed(data: bytes) -> bytes | None:
    """The payload if the file is whole and ours, else None."""
    head = len(_MAGIC) + 32
    if len(data) < head or not data.startswith(_MAGIC):
        return None
    payload = data[head:]
    return payload if hashlib.sha256(payload).digest() == data[len(_MAGIC) : head] else None


def read_stored(kind: str, model: Weighed | None, codec: Codec[T] = PICKLE, **spec: Any) -> T | None:
    """The stored result, or None when there is none or its file is damaged: never computes it.

    For pages that show a stored result only as a bonus, or that ask before a long computation."""
    return _read(stored_path(kind, model, codec, **spec), codec)


def has(kind: str, model: Weighed | None, codec: Codec[Any] = PICKLE, **spec: Any) -> bool:
    """Whether a file for this result exists (checked when read: a damaged one is recomputed then).

    Cheap enough for every page run, e.g. to ask before a long computation."""
    return stored_path(kind, model, codec, **spec).exists()


def _read(path: Path, codec: Codec[T]) -> T | None:
    try:
        payload = _unsealed(path.read_bytes())
    except OSError:  # missing, or unreadable to this process
        return None
    return None if payload is None else codec.decode(payload)


_locks: dict[Path, threading.Lock] = {}
_locks_lock = threading.Lock()
_writes = 0


def kept(
    kind: str,
    model: Weighed | None,
    compute: Callable[[], T],
    codec: Codec[T] = PICKLE,
    keep: bool = True,
    **spec: Any,
) -> T:
    """`compute()` once per (kind, weights, spec) for every process: read from the store, or computed and written.

    keep=False (a network trained in a user's session, an upload) computes without reading
    or writing. A read-only folder still returns the result, just does not keep it.
    Threads of one process asking for the same result wait for the one computation.
    """
    global _writes
    if not keep:
        return compute()
    path = stored_path(kind, model, codec, **spec)
    with _locks_lock:
        lock = _locks.setdefault(path, threading.Lock())
    with lock:
        if (stored := _read(path, codec)) is not None:
            return stored
        result = compute()
        with contextlib.suppress(OSError):  # a read-only deployment still works, it just recomputes
            write_atomic(path, _sealed(codec.encode(result)))
            with _locks_lock:
                _writes += 1
        return result


def writes() -> int:
    """How many results this process has written: `make warm` tells stored from already there by it."""
    return _writes
