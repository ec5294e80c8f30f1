"""Which passes through a shared network may run side by side, and which must run alone.

Every Streamlit session is a thread, and all of them use the same cached networks.
A plain forward pass of an eval-mode network changes nothing in it, so any number of
them run at once: a student's prediction never queues behind another student's
occlusion map (benchmarks/fairness.py measures it). Two things cannot overlap them:
- torch.fx tracing patches `nn.Module.__call__` for the whole process while it traces,
  so a forward pass of ANY network in another thread at that moment would be recorded
  into the trace instead of running. Tracing takes `exclusive()`; every forward pass
  takes `forward()`. Tracing is rare (each architecture once, at load).
- Hooks on a shared module would act on every pass through it, so code that puts
  them there (none in app/; captum as a test oracle) runs under `exclusive()` too, and
  under the model's `lock`, which gradient passes (app.analyses.attribution) also hold.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

_cond = threading.Condition()
_readers = 0
_writer = False
_writers_waiting = 0


@contextlib.contextmanager
def forward() -> Iterator[None]:
    """Held during a forward pass: many at once, none while a trace is being made."""
    global _readers
    with _cond:
        while _writer or _writers_waiting:  # a waiting trace goes first, or a busy class could starve it
            _cond.wait()
        _readers += 1
    try:
        yield
    finally:
        with _cond:
            _readers -= 1
            if _readers == 0:
                _cond.notify_all()


@contextlib.contextmanager
def exclusive() -> Iterator[None]:
    """Held while tracing: waits for running forward passes to end and lets no new one start."""
    global _writer, _writers_waiting
    with _cond:
        _writers_waiting += 1
        while _writer or _readers:
            _cond.wait()
        _writers_waiting -= 1
        _writer = True
    try:
        yield
    finally:
        with _cond:
            _writer = False
            _cond.notify_all()
