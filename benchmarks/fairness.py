"""Fair sharing: does one student's prediction wait for other students' heavy analyses?

Run: .venv/bin/python -m benchmarks.fairness [--heavy 5] [--predictions 8]

In one process, as on the server (Streamlit runs each session in a thread), HEAVY
threads run VGG-16 occlusion (window 32, stride 16) back to back, each on its own
image, while one more thread asks for a prediction of a new image every half second.
Prints the prediction's latency alone and under that load (median and worst), and
their ratio. A prediction that queues behind the occlusions' model lock shows up as a
latency of whole occlusion batches; one that only shares the CPU grows with the
number of busy threads. Untrained VGG-16 unless pretrained weights are available.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

from app.analyses import occlusion as occ
from app.networks.models import get_model_or_untrained
from tests.conftest import photo


def _latencies(model, n: int, pause: float) -> list[float]:
    out = []
    for i in range(n):
        x = model.preprocess(photo(seed=100 + i))
        start = time.perf_counter()
        model.top_k(x)
        out.append(time.perf_counter() - start)
        time.sleep(pause)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heavy", type=int, default=5, help="threads running occlusion at once")
    parser.add_argument("--predictions", type=int, default=8)
    args = parser.parse_args()
    model, _ = get_model_or_untrained("vgg16")
    model.top_k(model.preprocess(photo()))  # warm-up
    alone = _latencies(model, args.predictions, 0.5)

    stop = threading.Event()
    finished = []

    def heavy(seed: int) -> None:
        x = model.preprocess(photo(seed=seed))
        while not stop.is_set():
            occ.occlusion_map(model, x, 32, 16, progress=lambda d, t: None)
            finished.append(1)

    threads = [threading.Thread(target=heavy, args=(s,), daemon=True) for s in range(args.heavy)]
    for t in threads:
        t.start()
    time.sleep(3)  # every occlusion under way
    loaded = _latencies(model, args.predictions, 0.5)
    stop.set()
    for t in threads:
        t.join(timeout=600)

    def show(name: str, values: list[float]) -> None:
        print(f"{name:42} median {statistics.median(values):6.2f} s   worst {max(values):6.2f} s")

    print(f"VGG-16 ({model.weights}); {args.heavy} threads running occlusion w32 s16; {len(finished)} maps finished")
    show("prediction alone", alone)
    show(f"prediction while {args.heavy} occlusions run", loaded)
    print(f"ratio (median under load / alone): {statistics.median(loaded) / statistics.median(alone):.1f}x")


if __name__ == "__main__":
    main()
