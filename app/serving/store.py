"""The on-disk store for results computed once per set of weights (feature-space maps, unit tables).

Computing a Fashion-MNIST test-set map or a table of every unit's best images takes
seconds to minutes; a class of students would redo it on every visit. So such results
are written to one folder, named by a key that changes whenever the weights, the
code's format version or the parameters do, and any process of the app reads them.
Files are written atomically (temporary file, then rename) and made world-readable,
so several app replicas can share the folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Protocol

from app.base.paths import data_dir


class Weighed(Protocol):
    """What a stored result is keyed by: a network's name and the digest of its weights."""

    name: str

    def digest(self) -> str: ...


def store_dir() -> Path:
    """Where computed results are kept: $CNN_LENS_CACHE, else <data dir>/cache."""
    return Path(os.environ.get("CNN_LENS_CACHE", data_dir() / "cache"))


def store_key(model: Weighed, **spec: Any) -> str:
    """A file-name-safe key for a result of `model` (its name and weights) and `spec` (JSON-able values).

    spec must name everything else the result depends on (format version, parameters,
    library versions), so a changed computation never reads an old file."""
    full = {"model": model.name, "weights": model.digest(), **spec}
    return hashlib.sha256(json.dumps(full, sort_keys=True).encode()).hexdigest()[:32]


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
