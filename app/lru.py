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


class ResultStore:
    def __init__(self, max_entries: int = 128, ttl: float = 3600.0, clock: Callable[[], float] = time.monotonic):
        self.max_entries, self.ttl, self._clock = max_entries, ttl, clock
        self._items: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[Hashable, threading.Lock] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def clear(self) -> None:
        """Forget every result (e.g. when the weights they were computed with are replaced)."""
        with self._lock:
            self._items.clear()

    def get(self, key: Hashable) -> tuple[bool, Any]:
        with self._lock:
            item = self._items.get(key)
            if item is None or self._clock() - item[0] > self.ttl:
                self._items.pop(key, None)
                return False, None
            self._items.move_to_end(key)
            return True, item[1]

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._items[key] = (self._clock(), value)
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

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
