"""Device and numeric precision choice.

bf16 autocast with channels_last is several times faster on CPUs with
AVX-512-BF16/AMX, but emulated (slow) elsewhere, so it is used only where the
hardware has it; and where it may or may not pay (small batches without AMX),
`timings` measures it. Everything still runs in fp32 on any CPU or GPU.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Hashable, Iterator
from functools import cache

import torch


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@cache
def bf16_fast(device_type: str) -> bool:
    """True where bf16 matmuls/convolutions run natively (AMX/AVX-512-BF16, or CUDA)."""
    if device_type == "cuda":
        return torch.cuda.is_bf16_supported()
    return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve(precision: str, device: torch.device) -> str:
    """Map "auto" to the fastest precision this device runs natively: "bf16" or "fp32"."""
    if precision not in ("auto", "exact", "fp32", "bf16"):
        raise ValueError(f"unknown precision {precision!r}")
    if precision == "auto":
        return "bf16" if bf16_fast(device.type) else "fp32"
    return "fp32" if precision == "exact" else precision


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """Autocast context for a resolved precision; a no-op for fp32."""
    enabled = resolve(precision, device) == "bf16"
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled):
        yield


# Seconds per call of each precision, per key: measured once (see `timings`).
_timings: dict[Hashable, dict[str, float]] = {}
_timings_lock = threading.Lock()


def timings(key: Hashable, run: Callable[[str], float], repeats: int = 2) -> dict[str, float]:
    """Seconds of a workload in "fp32" and, where the device has it natively, "bf16", measured once per
    `key` (a model and a workload) and remembered: {precision: seconds}.

    Native bf16 is not always faster: on a CPU with AVX-512-BF16 but no AMX, one VGG-16 image runs
    slower in bf16 than in fp32, while batches of 16 need less than half the CPU time. So a workload
    that could use either asks the hardware rather than a rule. `run(precision)` does the work and
    returns the seconds of the part that counts (after its own warm-up); each precision runs
    `repeats` times, alternately, and the fastest run counts, as other work on a shared server can
    only make a run slower.
    """
    with _timings_lock:  # one measurement at a time: two at once would slow each other down
        if key not in _timings:
            candidates = ["fp32", "bf16"] if bf16_fast(pick_device().type) else ["fp32"]
            best = dict.fromkeys(candidates, math.inf)
            for _ in range(repeats):
                for p in candidates:
                    best[p] = min(best[p], run(p))
            _timings[key] = best
        return dict(_timings[key])
