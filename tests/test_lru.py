"""ResultStore: LRU order, expiry, and one computation for concurrent askers."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from app.serving.lru import ResultStore


def test_evicts_least_recently_used():
    store = ResultStore(max_entries=2)
    store.put("a", 1)
    store.put("b", 2)
    assert store.get("a") == (True, 1)  # a is now most recent
    store.put("c", 3)
    assert store.get("b") == (False, None) and store.get("a") == (True, 1) and len(store) == 2


def test_entries_expire():
    now = [0.0]
    store = ResultStore(ttl=10, clock=lambda: now[0])
    store.put("k", "v")
    now[0] = 9.9
    assert store.get("k") == (True, "v")
    now[0] = 20.0
    assert store.get("k") == (False, None) and len(store) == 0


def test_concurrent_callers_compute_once():
    store, calls = ResultStore(), []
    gate = threading.Event()

    def compute():
        calls.append(1)
        gate.wait(5)
        time.sleep(0.05)
        return 42

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(store.get_or_compute, "key", compute) for _ in range(8)]
        time.sleep(0.1)
        gate.set()
        assert [f.result() for f in futures] == [42] * 8
    assert len(calls) == 1


def test_byte_budget_evicts_oldest_and_counts_arrays_inside_results():
    """Entries are not alike: one Fashion test-set map holds ~60 MB, one prediction a few bytes. A byte
    budget bounds what a count cannot (issue 15: RSS passed the replica's 3 GB)."""
    import numpy as np
    import torch

    from app.serving.lru import approx_nbytes

    mb = 2**20
    assert approx_nbytes((np.zeros(mb, np.uint8), {"t": torch.zeros(mb // 4)}, [b"x" * 10])) >= 2 * mb
    store = ResultStore(max_entries=100, max_bytes=5 * mb // 2)
    store.put("a", np.zeros(mb, np.uint8))
    store.put("b", (np.zeros(mb, np.uint8),))
    store.get("a")  # a is now the most recent
    store.put("c", {"x": np.zeros(mb, np.uint8)})
    assert store.get("b") == (False, None) and store.get("a")[0] and store.get("c")[0]
    assert store.nbytes <= 5 * mb // 2
    store.put("huge", np.zeros(5 * mb, np.uint8))  # larger than the budget: kept alone (it was just asked for)
    assert len(store) == 1 and store.get("huge")[0]
