"""Deletion and insertion curves on VGG-16 at 224 px, 50 steps: batched against a one-image loop.

Run: .venv/bin/python -m benchmarks.faithfulness [--repeats N] [--steps S]

Times `app.analyses.faithfulness.deletion_insertion` (the two curves of one map: 2 x steps
distinct images in batches, channels_last; "auto" precision is whichever of fp32 and bf16 a
one-time measurement found faster) in "auto", fp32, bf16 and the previous default (bf16, 4
images a batch), against the straightforward reference: one forward pass per step image, each
built by copying the deleted/inserted pixels (the loop in tests/test_faithfulness.py). Medians
of N calls after a warm-up; wall and process CPU seconds (CPU seconds are the fair comparison
on a shared machine); the load average before and after. Ends with the work in multiply-adds
and the speed reached, which is what decides whether the 3 s target is in reach. Prints how far the curves of each
mode are from the loop's (max |difference| of probabilities and of the areas). Untrained VGG-16
weights are used unless pretrained ones are available (timing does not depend on them); with
untrained weights the probabilities are nearly flat, so the accuracy columns mean little there.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from app.analyses import attribution as attr
from app.analyses import faithfulness as faith
from app.analyses import occlusion
from app.networks.loaded import LoadedModel
from app.networks.models import get_model_or_untrained
from benchmarks.attribution import test_image


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float, object]:
    """(median wall seconds, median CPU seconds of this process, last result) after one warm-up call."""
    out = fn()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        out = fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu), out


def one_at_a_time(model: LoadedModel, x: torch.Tensor, saliency: np.ndarray, target: int, steps: int) -> faith.Curves:
    """The reference: every step image built by index and run alone, fp32."""
    fill = occlusion.make_baseline(model, x, "blur")
    order = np.argsort(-saliency.ravel(), kind="stable")
    h, w = saliency.shape
    curves: dict[str, list[float]] = {"deletion": [], "insertion": []}
    for k in range(steps + 1):
        ys, xs = np.unravel_index(order[: round(k * h * w / steps)], (h, w))
        deleted, inserted = x.clone(), fill.clone()
        deleted[..., ys, xs] = fill[..., ys, xs]
        inserted[..., ys, xs] = x[..., ys, xs]
        for name, image in (("deletion", deleted), ("insertion", inserted)):
            with torch.inference_mode():
                curves[name].append(float(torch.softmax(model.module(image), 1)[0, target]))
    return faith.Curves(
        np.linspace(0, 1, steps + 1), np.array(curves["deletion"]), np.array(curves["insertion"]), "fp32"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=faith.STEPS)
    args = parser.parse_args()
    model, _ = get_model_or_untrained("vgg16")
    x = model.preprocess(test_image())
    target = int(model.logits(x)[0].argmax())
    saliency = attr.grad_cam(model, x, target)
    print(f"VGG-16 ({'trained' if model.trained else 'untrained'}), 224 px, {args.steps} steps, Grad-CAM map")
    print(f"threads {torch.get_num_threads()}, load average before: {os.getloadavg()}")
    runs = {
        "batched, auto": lambda: faith.deletion_insertion(model, x, saliency, target, args.steps),
        "batched, fp32": lambda: faith.deletion_insertion(model, x, saliency, target, args.steps, precision="fp32"),
        "batched, bf16": lambda: faith.deletion_insertion(model, x, saliency, target, args.steps, precision="bf16"),
        "before: bf16, 4 a batch": lambda: faith.deletion_insertion(
            model, x, saliency, target, args.steps, precision="bf16", batch=4
        ),
        "one at a time, fp32": lambda: one_at_a_time(model, x, saliency, target, args.steps),
    }
    results = {name: timed(fn, args.repeats) for name, fn in runs.items()}
    reference = results["one at a time, fp32"]
    print(f"{'mode':24} {'wall s':>8} {'CPU s':>8} {'x less CPU':>11} {'max |dp|':>10} {'max |d area|':>13}")
    for name, (wall, cpu, curves) in results.items():
        ref = reference[2]
        dp = max(np.abs(curves.deletion - ref.deletion).max(), np.abs(curves.insertion - ref.insertion).max())
        da = max(abs(curves.deletion_auc - ref.deletion_auc), abs(curves.insertion_auc - ref.insertion_auc))
        print(f"{name:24} {wall:8.2f} {cpu:8.2f} {reference[1] / cpu:11.2f} {dp:10.2e} {da:13.2e}")
    auto = results["batched, auto"][2].precision
    measured = ", ".join(f"{p} {s:.3f} s" for p, s in faith.precision_timings(model).items())
    print(f"auto chose {auto} (measured per image: {measured}); batch {faith.default_batch(model)}")
    gmac = occlusion.network_macs(model) * 2 * args.steps / 1e9
    best = min(results[name][1] for name in runs if name.startswith("batched"))
    print(
        f"work: {2 * args.steps} forward passes x {occlusion.network_macs(model) / 1e9:.1f} GMAC = {gmac:.0f} GMAC; "
        f"best batched run {gmac / best:.0f} GMAC per CPU second, so 3 s of wall time needs "
        f"{gmac / 3 / (gmac / best):.1f} cores at that speed"
    )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
