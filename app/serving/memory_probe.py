"""A look inside a running server's memory, on request, for the soak benchmark (benchmarks/soak.py).

Resident memory says that a server grows, not what grows. Started with $CNN_LENS_MEMORY_PROBE
set to a folder, the server traces Python allocations (tracemalloc) and watches that folder:
for each `<label>.request` file that appears it writes `<label>.json` (resident memory, the
traced total, and how many live objects of the watched classes, e.g. Streamlit's session
states, exist) and `<label>.snapshot` (a tracemalloc snapshot, for `compare_to`), then removes
the request. Tracing costs CPU and memory, so it is for measuring, never for class.
"""

from __future__ import annotations

import gc
import json
import os
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

PROBE_ENV = "CNN_LENS_MEMORY_PROBE"
FRAMES = 8  # call stack kept per allocation: enough to see which of our functions allocated


def resident_mb() -> float:
    """This process's resident memory (VmRSS) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise OSError("no VmRSS in /proc/self/status")


def live_objects(class_names: Sequence[str]) -> dict[str, int]:
    """How many objects of each named class (module.qualname) the garbage collector can reach now."""
    gc.collect()
    wanted = set(class_names)
    counts = Counter(
        name for obj in gc.get_objects() if (name := f"{type(obj).__module__}.{type(obj).__qualname__}") in wanted
    )
    return {name: counts.get(name, 0) for name in class_names}


def dump(folder: Path, label: str, class_names: Sequence[str]) -> dict[str, object]:
    """Write `<label>.snapshot` and `<label>.json` into folder; returns what the JSON says."""
    report: dict[str, object] = {
        "label": label,
        "time": time.time(),
        "objects": live_objects(class_names),
        "rss_mb": resident_mb(),
    }
    if tracemalloc.is_tracing():
        tracemalloc.take_snapshot().dump(str(folder / f"{label}.snapshot"))
        report["traced_mb"] = tracemalloc.get_traced_memory()[0] / 2**20
    (folder / f"{label}.json").write_text(json.dumps(report))
    return report


def start(folder: str | os.PathLike[str], class_names: Sequence[str], poll: float = 0.5) -> threading.Thread:
    """Trace allocations from now on and answer `<label>.request` files in folder from a daemon thread."""
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    tracemalloc.start(FRAMES)

    def watch() -> None:
        while True:
            for request in sorted(path.glob("*.request")):
                dump(path, request.stem, class_names)
                request.unlink(missing_ok=True)
            time.sleep(poll)

    thread = threading.Thread(target=watch, daemon=True, name="cnn-lens-memory-probe")
    thread.start()
    return thread
