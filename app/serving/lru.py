"""A small thread-safe LRU store with expiry, for per-image analysis results.

Streamlit's `st.cache_data` replays the elements a cached function drew, so a
function that reports progress to a bar created by the page cannot be cached
with it; and it re-pickles every result on every hit. This store keeps results
as they are (callers must treat them as read-only) and lets the computation
report progress freely.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np
import torch
from PIL import Image


def approx_nbytes(value: Any, depth: int = 6) -> int:
    """Memory held by a result, counting the arrays inside it (NumPy, torch, SciPy sparse, PIL images),
    through tuples, lists, dicts and plain objects' attributes; small Python objects count 64 bytes.

    An estimate for a memory budget, not an exact figure: shared arrays count once per holder.
    """
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, torch.Tensor):
        return value.element_size() * value.nelement()
    if isinstance(value, bytes | bytearray | str):
        return len(value)
    if isinstance(value, Image.Image):
        return value.width * value.height * len(value.getbands())
    if depth <= 0:
        return 64
    if isinstance(value, dict):
        return sum(approx_nbytes(v, depth - 1) for v in value.values())
    if isinstance(value, list | tuple | set | frozenset):
        return sum(approx_nbytes(v, depth - 1) for v in value)
    if hasattr(value, "data") and hasattr(value, "indices") and hasattr(value, "indptr"):  # scipy.sparse
        return sum(approx_nbytes(getattr(value, a), depth - 1) for a in ("data", "indices", "indptr"))
    if hasattr(value, "__dict__") or hasattr(value, "__slots__"):
        attrs = dict(getattr(value, "__dict__", {}))
        attrs.update({s: getattr(value, s, None) for s in getattr(value, "__slots__", ())})
        return 64 + sum(approx_nbytes(v, depth - 1) for v in attrs.values())
    return 64


class ResultStore:
    """Results by key, least recently used evicted first, beyond max_entries or max_bytes (see approx_nbytes)."""

    def __init__(
        self,
        max_entries: int = 128,
        ttl: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
        max_bytes: int | None = None,
    ):
        self.max_entries, self.ttl, self._clock, self.max_bytes = max_entries, ttl, clock, max_bytes
        self._items: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._sizes: dict[Hashable, int] = {}
        self.nbytes = 0
        self._lock = threading.Lock()
        self._key_locks: dict[Hashable, threading.Lock] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def clear(self) -> None:
        """Forget every result (e.g. when the weights they were computed with are replaced)."""
        with self._lock:
            self._items.clear()
            self._sizes.clear()
            self.nbytes = 0

    def get(self, key: Hashable) -> tuple[bool, Any]:
        with self._lock:
            item = self._items.get(key)
            if item is None or self._clock() - item[0] > self.ttl:
                self._drop(key)
                return False, None
            self._items.move_to_end(key)
            return True, item[1]

    def _drop(self, key: Hashable) -> None:
        self._items.pop(key, None)
        self.nbytes -= self._sizes.pop(key, 0)

    def put(self, key: Hashable, value: Any) -> None:
        size = approx_nbytes(value)  # weighed even without a budget: `nbytes` says what the store holds
        with self._lock:
            self._drop(key)
            self._items[key] = (self._clock(), value)
            self._sizes[key] = size
            self.nbytes += size
            while len(self._items) > self.max_entries or (
                self.max_bytes is not None and self.nbytes > self.max_bytes and len(self._items) > 1
            ):
                self._drop(next(iter(self._items)))

    def get_or_compute(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """Cached value, else compute once even if several threads ask at the same time."""
        hit, value = self.get(key)
        if hit:
            return value
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            hit, value = self.get(key)
            if not hit:
                value = compute()
                self.put(key, value)
        with self._lock:
            self._key_locks.pop(key, None)
        return value
