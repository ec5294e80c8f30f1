"""Device and numeric precision choice.

bf16 autocast with channels_last is several times faster on CPUs with
AVX-512-BF16/AMX, but emulated (slow) elsewhere, so it is used only where the
hardware has it. Everything still runs in fp32 on any CPU or GPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
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
