"""Resident memory of one app process over a scripted exploration: what grows, and is it bounded?

Runs the real app in Streamlit's AppTest (in this process, scripts in their own thread, as
the server runs sessions) through rounds of: both models, every sample image, the pages
that cache per image (prediction, activations with several layers, attribution,
occlusion), plus a large photo decoded and converted for the Fashion model. Prints the
process's resident memory (VmRSS) after each round and its peak (VmHWM). Run it twice to compare allocators, e.g.:

    python -m benchmarks.memory --rounds 10
    MALLOC_ARENA_MAX=2 python -m benchmarks.memory --rounds 10
    CNN_LENS_TRIM_SECONDS=0 python -m benchmarks.memory --rounds 10   # without the server's malloc_trim

glibc gives each thread that allocates its own arena (up to 8 per core); freed tensor
memory then stays mapped in many arenas and RSS grows without bound in multi-threaded
servers. If RSS keeps rising round after round with bounded caches, that is the cause.
"""

from __future__ import annotations

import argparse
import io
import os
import time

from streamlit.testing.v1 import AppTest

from app.networks.samples import sample_bytes, samples
from app.serving import trim
from tests.apptest import ENTRY
from tests.conftest import photo

PAGES = ["pages/prediction.py", "pages/activations.py", "pages/attribution.py", "pages/occlusion.py"]


def _status(field: str) -> float:
    """A /proc/self/status memory field in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(field)


def _big_jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    photo((3000, 2000), seed=seed).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def _visit(model: str, image: tuple[str, bytes], source: str) -> None:
    at = AppTest.from_file(ENTRY, default_timeout=600)
    at.session_state["model_name"] = model
    if source == "Upload":
        at.session_state["image_source"] = "Upload"
        at.session_state["upload"] = image
    else:
        at.session_state[f"sample_{model}"] = next(s for s in samples(model) if s.name == image[0])
    at.run()
    for page in PAGES:
        at.switch_page(page).run()
        if page.endswith("activations.py"):
            options = next(s for s in at.selectbox if s.label == "Layer").options
            for layer in options[1 :: max(1, len(options) // 4)]:
                next(s for s in at.selectbox if s.label == "Layer").set_value(layer).run()
        if at.exception:
            raise RuntimeError([e.value for e in at.exception])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=["fashion_cnn", "vgg16"])
    args = parser.parse_args()
    every = float(os.environ.get(trim.TRIM_ENV, trim.DEFAULT_EVERY))
    trim.start(every)  # as scripts/serve.py does on a server
    print(f"MALLOC_ARENA_MAX={os.environ.get('MALLOC_ARENA_MAX', '(unset)')}; malloc_trim every {every:g} s (0: off)")
    print(f"start: RSS {_status('VmRSS'):.0f} MB")
    for r in range(args.rounds):
        t = time.perf_counter()
        for model in args.models:
            for sample in samples(model):
                _visit(model, (sample.name, sample_bytes(sample)), "Sample")
            _visit(model, (f"big{r}.jpg", _big_jpeg(r)), "Upload")
        print(
            f"round {r + 1}: RSS {_status('VmRSS'):.0f} MB, peak {_status('VmHWM'):.0f} MB "
            f"({time.perf_counter() - t:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
