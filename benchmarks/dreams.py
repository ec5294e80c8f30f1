"""Dreams against the issue's speed targets, at the page's default settings.

Run: .venv/bin/python -m benchmarks.dreams [--repeats N] [--skip-vgg]

Each line: wall seconds and the CPU seconds of this process (all threads; on a
machine shared with other jobs the steadier measure of the work; on an idle
2-core machine wall is about CPU / 2), median of N runs after a warm-up call that
builds the private graphs. VGG-16 runs untrained unless pretrained weights are
available (speed does not depend on the weights).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from app.analyses import dreams
from app.networks.models import get_model, get_model_or_untrained
from tests.conftest import photo


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(median wall seconds, median CPU seconds of this process)."""
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def report(name: str, target: float, fn: Callable[[], object], repeats: int) -> None:
    wall, cpu = timed(fn, repeats)
    verdict = "ok" if wall < target else "MISSED"
    print(f"{name:58s} {wall:7.2f} s wall {cpu:7.2f} s CPU   target {target:4.0f} s: {verdict}", flush=True)


def first_preview(run: Callable[[Callable[[dreams.Dream], None]], object]) -> float:
    """Seconds from the start until the first preview picture arrives (wall)."""
    start, seen = time.perf_counter(), []
    run(lambda d: seen.append(time.perf_counter() - start) if not seen else None)
    return seen[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--skip-vgg", action="store_true")
    args = parser.parse_args()

    fashion = get_model("fashion_cnn")
    dreams.visualise(fashion, "relu2_2", 3, steps=2)
    dreams.class_model(fashion, 0, steps=2)
    report(
        "Fashion CNN feature visualisation, relu2_2, 256 steps",
        3,
        lambda: dreams.visualise(fashion, "relu2_2", 3),
        args.repeats,
    )
    report("Fashion CNN class model, 256 steps", 3, lambda: dreams.class_model(fashion, 0), args.repeats)
    if args.skip_vgg:
        return

    vgg, _ = get_model_or_untrained("vgg16")
    print(f"VGG-16 weights: {vgg.weights}")
    image = photo((320, 240))
    style = dreams.bundled_styles()["udnie"][1]()
    layer = dreams.default_dream_layer(vgg)
    dreams.visualise(vgg, "relu4_2", 7, size=64, steps=1)
    dreams.deep_dream(vgg, image, layer, octaves=1, steps=1)
    dreams.style_transfer(vgg, image, style, size=64, steps=1)
    report(
        "VGG-16 feature visualisation, relu4_2, 128 px, 128 steps",
        20,
        lambda: dreams.visualise(vgg, "relu4_2", 7, size=128, steps=128),
        args.repeats,
    )
    report(
        f"VGG-16 DeepDream, 224 px, {layer}, 4 octaves x 10 steps", 15, lambda: dreams.deep_dream(vgg, image, layer), 1
    )
    preview = first_preview(lambda p: dreams.style_transfer(vgg, image, style, preview=p, steps=2))
    print(
        f"{'VGG-16 style transfer, 192 px: first preview':58s} {preview:7.2f} s wall{'':22s}target    5 s", flush=True
    )
    report("VGG-16 style transfer, 192 px, 80 steps", 45, lambda: dreams.style_transfer(vgg, image, style), 1)


if __name__ == "__main__":
    main()
