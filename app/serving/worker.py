"""Run one analysis in a fresh Python process, with progress and cancel, as live training does.

Inside the Streamlit server every session is a thread of one process, so a long PyTorch job
in a thread shares the server's global interpreter lock with the event loop and every other
session's script. A network of many small layers (EfficientNet-Lite0: hundreds of short
operations per pass, each giving up the lock and taking it back) then waits for the lock
more than it computes: in one process, the cascading randomisation of EfficientNet-Lite0 ran
8.6x slower in wall time while another thread merely ran Python (benchmarks/sanity_server.py
measures the page itself). A separate process has its own interpreter lock and its own
PyTorch thread pool of one thread (two threads on a busy 2-core machine mostly wait for
each other), and it cannot slow down what other sessions compute.

`call(target, kwargs, progress)` runs `target(**kwargs, progress=...)` in the child, where
target is "package.module:function"; arguments and result travel pickled. progress(done,
total) is forwarded to the parent's callback; when that raises (a cancelled job), the child is
told to stop and the exception goes on. It is a plain subprocess, not multiprocessing, whose
"spawn" would re-run the main module in the child, which inside Streamlit is the page script.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from app.base.errors import Cancelled
from app.serving.progress import Progress

REPO = Path(__file__).resolve().parents[2]


def call(
    target: str, kwargs: dict[str, Any], progress: Progress | None = None, lock: threading.RLock | None = None
) -> Any:
    """`target(**kwargs, progress=...)` computed in a fresh process; its result, or its error re-raised
    here as a RuntimeError with the child's message (a Cancelled from `progress` passes through).
    The arguments are pickled under `lock` if given (a shared model's, so that no hook is on it)."""
    with lock or contextlib.nullcontext():
        request = pickle.dumps((target, kwargs), protocol=pickle.HIGHEST_PROTOCOL)
    read_fd, write_fd = os.pipe()
    code = "from app.serving.worker import child_main; child_main()"
    args = [sys.executable, "-c", code, str(write_fd)]
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, pass_fds=(write_fd,), cwd=REPO)
    os.close(write_fd)
    try:
        proc.stdin.write(request)
        proc.stdin.flush()
        with os.fdopen(read_fd, "rb") as messages:
            while True:
                try:
                    kind, *body = pickle.load(messages)
                except EOFError:
                    raise RuntimeError(f"the worker process ended unexpectedly (exit code {proc.wait()})") from None
                if kind == "progress" and progress is not None:
                    progress(*body)
                elif kind == "done":
                    return body[0]
                elif kind == "error":
                    raise RuntimeError(body[0])
    finally:
        with contextlib.suppress(OSError):
            proc.stdin.close()  # end of file: the child stops at its next progress report
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def child_main() -> None:
    """The worker process: reads (target, kwargs) from stdin, sends ("progress", done, total) ... then
    ("done", result) or ("error", message) to the pipe whose descriptor is argv[1] (never stdout, so
    stray prints cannot corrupt them). Anything more on stdin, or its end, means stop."""
    import torch

    out = os.fdopen(int(sys.argv[1]), "wb")
    target, kwargs = pickle.load(sys.stdin.buffer)
    stop = threading.Event()
    threading.Thread(target=lambda: (os.read(0, 1), stop.set()), daemon=True).start()

    def send(message: tuple) -> None:
        pickle.dump(message, out)
        out.flush()

    def report(done: int, total: int) -> None:
        if stop.is_set():
            raise Cancelled("Cancelled.")
        send(("progress", done, total))

    torch.set_num_threads(1)
    module, _, name = target.partition(":")
    try:
        send(("done", getattr(importlib.import_module(module), name)(**kwargs, progress=report)))
    except Cancelled:
        pass
    except Exception as exc:  # reported to the page, not lost with the process
        send(("error", f"{type(exc).__name__}: {exc}"))
