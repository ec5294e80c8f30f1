"""Helpers for real-browser tests: a live `streamlit run` and Debian's headless Chromium."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# JavaScript conditions for waiting on the app the way a person watches it.
# Streamlit marks its root with the script's state: 'running', 'rerunRequested', 'notRunning', ...
SCRIPT_STATE = "document.querySelector('[data-testid=stApp]')?.dataset.testScriptState"
IDLE = f"{SCRIPT_STATE} === 'notRunning'"
# Nothing on the page still computing: no spinner, placeholder or progress bar.
SETTLED = "!document.querySelector('[data-testid=stSpinner], [data-testid=stSkeleton], [data-testid=stProgress]')"

_last_pid: list[int] = []


def last_server_pid() -> int:
    """PID of the most recently started app server (for memory measurements)."""
    return _last_pid[-1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(env: dict[str, str] | None = None, timeout: float = 90) -> Iterator[str]:
    """Start the app on a free loopback port; yields its URL; always stops it."""
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port)]
    cmd += ["--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    # The server's output goes to a file, not a pipe: a pipe nobody reads fills up
    # (64 KiB) and then blocks the server mid-request.
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT)
        _last_pid.append(proc.pid)
        try:
            _wait_healthy(proc, log, f"http://127.0.0.1:{port}", timeout)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _wait_healthy(proc: subprocess.Popen, log, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"streamlit exited: {log.read().decode(errors='replace')[-2000:]}")
        with contextlib.suppress(OSError):
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                return
        time.sleep(0.5)
    raise TimeoutError("streamlit did not become healthy")


@contextlib.contextmanager
def chromium_page(width: int = 1400, height: int = 1000):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()


def wait_while_progressing(page, done, stall_ms: int = 180_000) -> None:
    """Wait for the locator `done` for as long as the page shows progress moving.

    A long computation (a dream, a unit table) takes minutes on a busy machine and seconds
    on a quiet one, so no fixed time limit fits both: the limit is `stall_ms` without any
    change in the page's progress bars and status texts, which only a stuck run reaches."""
    progress = page.locator("[data-testid=stProgress], [data-testid=stStatusWidget], [data-testid=stSpinner]")
    last, still_since = None, time.monotonic()
    while not (done.count() and done.first.is_visible()):
        seen = "|".join(progress.all_inner_texts())
        if seen != last:
            last, still_since = seen, time.monotonic()
        elif (time.monotonic() - still_since) * 1000 > stall_ms:
            raise TimeoutError(f"no progress for {stall_ms / 1000:.0f} s; the page last showed {last!r}")
        page.wait_for_timeout(500)


def fashion_subset(folder: Path, n: int) -> Path:
    """A data folder holding the first `n` Fashion-MNIST test images (idx files, as the real ones).

    A server pointed at it (CNN_LENS_DATA) builds its test-set tables from n images instead
    of 10,000: what the page shows is the same kind of thing, found 10,000 / n times faster."""
    import gzip

    from app.networks.datasets import load_fashion_mnist

    images, labels = load_fashion_mnist("test")
    raw = folder / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    header = (0x803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (n, 28, 28))
    (raw / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + images[:n].numpy().tobytes()))
    header = (0x801).to_bytes(4, "big") + n.to_bytes(4, "big")
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(header + labels[:n].numpy().astype("uint8").tobytes())
    )
    return folder


def wait_for_run(page, timeout_ms: int = 240_000) -> None:
    """After a click, wait as a person would: for the run it asked for to start (if one shows
    within 3 s) and to finish. Clicking on while a run is in flight can get the click dropped."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    with contextlib.suppress(PlaywrightTimeout):
        page.wait_for_function(f"!({IDLE})", timeout=3000)
    page.wait_for_function(IDLE, timeout=timeout_ms)
