"""The app server a benchmark measures: started the way a class server starts it, pinned to its own cores.

`pinned_server` starts `python -m scripts.serve` (models loaded and run before the port opens)
under `taskset`, on a free loopback port, and yields a `Server` whose CPU time and memory come
from /proc: user + system time of the whole process (all its threads), resident and peak
resident memory. The benchmark's own process is moved to other cores by `pin_self`, so its
clients never take CPU the figures attribute to the server.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.browser import REPO, free_port


@dataclass(frozen=True)
class Server:
    url: str
    pid: int

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far (every thread)."""
        return _cpu_seconds(Path(f"/proc/{self.pid}/stat").read_bytes())

    def cpu_reader(self) -> Callable[[], float]:
        """cpu_seconds for frequent sampling: the /proc file stays open and is re-read in place."""
        fd = os.open(f"/proc/{self.pid}/stat", os.O_RDONLY)
        weakref.finalize(self, os.close, fd)
        return lambda: _cpu_seconds(os.pread(fd, 4096, 0))

    def memory_mb(self) -> tuple[float, float]:
        """(resident now, peak resident) in MB."""
        values = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024
        return values["VmRSS"], values["VmHWM"]


def _cpu_seconds(stat: bytes) -> float:
    fields = stat.rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def parse_cores(text: str) -> set[int]:
    """ "0", "0,1" or "0-3" -> a set of core numbers (the taskset -c syntax)."""
    cores: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        cores.update(range(int(first), int(last or first) + 1))
    return cores


def pin_self(cores: set[int]) -> None:
    """Run this process (and the threads it starts from now on) on these cores only."""
    os.sched_setaffinity(0, cores)


@contextlib.contextmanager
def pinned_server(cores: set[int], env: dict[str, str] | None = None, timeout: float = 600) -> Iterator[Server]:
    """Start the app with `python -m scripts.serve` on these cores; yields once it answers; always stops it.

    OMP_NUM_THREADS follows the number of cores, as docker-compose.yml sets it per replica.
    """
    port = free_port()
    cmd = ["taskset", "-c", ",".join(map(str, sorted(cores))), sys.executable, "-m", "scripts.serve"]
    cmd += ["--server.port", str(port), "--server.address", "127.0.0.1"]
    full_env = {**os.environ, "OMP_NUM_THREADS": str(len(cores)), **(env or {})}
    with tempfile.TemporaryFile() as log:  # a file, not a pipe: a full pipe would block the server
        proc = subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_healthy(proc, log, url, timeout)
            yield Server(url, proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def _wait_healthy(proc: subprocess.Popen, log, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"the server exited: {log.read().decode(errors='replace')[-3000:]}")
        with contextlib.suppress(OSError):
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                return
        time.sleep(0.5)
    raise TimeoutError(f"the server did not answer within {timeout:.0f} s")
