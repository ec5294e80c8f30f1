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

import sys
import time

from app.base.paths import REPO
from app.networks.models import OFFER_ENV, offered_models


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
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(REPO / "streamlit_app.py"), *argv]
    return cli.main()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
