"""Start the app with its models loaded and run once, before anyone can connect.

    python -m scripts.serve [flags of `streamlit run`, e.g. --server.port 8501]

Streamlit has no start-up hook for its caches, and its shared models were loaded by the first
student's first run (36-86 s, every model, VGG-16 included). This launcher fills the same
process's cache first (pages.cache.warm_models: the models this server offers, each run once on
a sample), then starts Streamlit's server in this process, exactly as `streamlit run
streamlit_app.py` with the same flags would. The port opens only after the warm-up, so the
health check (/_stcore/health), Docker's HEALTHCHECK and Kubernetes' probes say "ready" only then.

$CNN_LENS_OFFER limits the models (comma-separated registry names); a name this server does
not have stops the launch with a message naming the models it has.
"""

from __future__ import annotations

import os
import sys
import time

from app.base.paths import REPO
from app.networks.models import OFFER_ENV, offered_models
from app.serving import memory_probe, trim

# What one student's session holds in Streamlit: counted by the memory probe, to see them freed.
SESSION_CLASSES = (
    "streamlit.runtime.app_session.AppSession",
    "streamlit.runtime.state.session_state.SessionState",
)


def main(argv: list[str]) -> int:
    names, problems = offered_models()
    for problem in problems:
        print(f"CNN Lens: {problem}", file=sys.stderr)
    if any(p.startswith(OFFER_ENV) for p in problems):
        return 2
    start = time.perf_counter()
    from pages import cache  # imports Streamlit; its caches are this process's

    for name, seconds in cache.warm_models().items():
        print(f"CNN Lens: {names[name]} loaded and run once ({seconds:.2f} s for its first image)", flush=True)
    print(f"CNN Lens: models ready in {time.perf_counter() - start:.1f} s; starting the server", flush=True)
    _watch_memory()
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(REPO / "streamlit_app.py"), *argv]
    return cli.main()


def _watch_memory() -> None:
    """Give freed memory back every $CNN_LENS_TRIM_SECONDS (app.serving.trim); with $CNN_LENS_MEMORY_PROBE
    set, trace allocations and answer the soak benchmark's requests (app.serving.memory_probe)."""
    every = float(os.environ.get(trim.TRIM_ENV, trim.DEFAULT_EVERY))
    if trim.start(every) is not None:
        print(f"CNN Lens: freed memory given back to the system every {every:g} s", flush=True)
    if folder := os.environ.get(memory_probe.PROBE_ENV):
        memory_probe.start(folder, SESSION_CLASSES)
        print(f"CNN Lens: tracing memory; snapshots on request in {folder}", flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
