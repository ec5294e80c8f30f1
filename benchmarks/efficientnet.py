"""EfficientNet-Lite0 against VGG-16 on this machine, as ratios measured in the same run.

Run: .venv/bin/python -m benchmarks.efficientnet [--repeats N]

1. Prediction + all activations of one 224 px image (one forward pass returning every
   layer: 149 outputs for EfficientNet-Lite0, 39 for VGG-16), fp32 as the pages run it.
2. Occlusion, window 32, stride 16 (169 positions), precision "auto" (what the page
   uses) and "exact" (fp32). VGG-16 is a chain of layers and runs the incremental
   engine; EfficientNet-Lite0 has residual additions and runs whole occluded images
   (the dense fallback), so the ratio includes that difference.
3. For EfficientNet-Lite0, bf16 autocast against fp32 (the precision decision is
   measured, not assumed): time and the largest change of a top-5 probability for the
   forward pass; for occlusion, time, the largest change of any probability and how
   often the predicted class changes (app.networks.models.BULK_PRECISION keeps it in fp32).

Wall and CPU seconds (all threads of this process) are printed; on a shared machine
CPU time is the steadier measure of the work. VGG-16 runs untrained without internet;
its speed does not depend on the weights.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from PIL import Image

from app.analyses import occlusion as occ
from app.networks.activations import activations
from app.networks.models import get_model, get_model_or_untrained
from app.serving import precision
from benchmarks.occlusion import timed
from tests.conftest import photo


def _top5_change(reference: torch.Tensor, other: torch.Tensor) -> float:
    p, q = reference.softmax(-1)[0], other.softmax(-1)[0]
    top = p.topk(5).indices
    return float((q[top] - p[top]).abs().max())


def _line(name: str, times: dict[str, tuple[float, float]], note: str = "") -> None:
    (vw, vc), (lw, lc) = times["vgg16"], times["efficientnet_lite0"]
    print(f"{name:40} {vw:8.2f} {vc:8.1f} {lw:8.2f} {lc:8.1f}   x{vw / lw:5.1f} x{vc / lc:5.1f}  {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    vgg, why = get_model_or_untrained("vgg16")
    lite = get_model("efficientnet_lite0")
    models = {"vgg16": vgg, "efficientnet_lite0": lite}
    image = photo((320, 240))
    xs = {name: m.preprocess(image) for name, m in models.items()}
    print(f"VGG-16: {vgg.weights}{'; ' + why if why else ''}. EfficientNet-Lite0: {lite.weights}.")
    print(f"torch threads {torch.get_num_threads()}, 'auto' precision here = {precision.resolve('auto', lite.device)}")
    print(f"\n{'':40} {'VGG-16':>17} {'EfficientNet-Lite0':>17}   Lite0 faster by")
    print(f"{'':40} {'wall s':>8} {'CPU s':>8} {'wall s':>8} {'CPU s':>8}   {'wall':>6} {'CPU':>6}")

    times = {}
    for name, m in models.items():
        wall, cpu, _ = timed(lambda m=m, x=xs[name]: activations(m, x, "fp32"), args.repeats)
        times[name] = (wall, cpu)
    _line("prediction + all activations (fp32)", times)

    results = {}
    for mode in ("auto", "exact"):
        times = {}
        for name, m in models.items():
            wall, cpu, results[name, mode] = timed(
                lambda m=m, x=xs[name], mode=mode: occ.occlusion_map(m, x, 32, 16, precision=mode), args.repeats
            )
            times[name] = (wall, cpu)
        engines = ", ".join(f"{n}: {results[n, mode].engine} {results[n, mode].precision}" for n in models)
        _line(f"occlusion w32 s16 {mode}", times, engines)

    print("\nEfficientNet-Lite0, bf16 autocast vs fp32 (chelsea from the samples):")
    x = lite.preprocess(Image.open("assets/samples/photo_cat.jpg").convert("RGB"))
    fp32 = timed(lambda: lite.logits(x, "fp32"), args.repeats * 3)
    bf16 = timed(lambda: lite.logits(x, "bf16"), args.repeats * 3)
    print(
        f"  forward: fp32 {fp32[0] * 1000:.0f} ms, bf16 {bf16[0] * 1000:.0f} ms (x{fp32[0] / bf16[0]:.2f}); "
        f"largest top-5 probability change {_top5_change(fp32[2], bf16[2]):.3f}"
    )
    wall, cpu, exact = timed(lambda: occ.occlusion_map(lite, x, 32, 16, precision="exact"), 1)
    print(f"  occlusion w32 s16 fp32: {wall:.1f} s wall, {cpu:.1f} CPU s")
    wall, cpu, bf16_map = timed(lambda: occ.occlusion_map(lite, x, 32, 16, precision="bf16"), 1)
    change = float(np.abs(occ.probabilities(bf16_map) - occ.probabilities(exact)).max())
    agree = float((occ.predicted_class_map(bf16_map) == occ.predicted_class_map(exact)).mean())
    print(
        f"  occlusion w32 s16 bf16: {wall:.1f} s wall, {cpu:.1f} CPU s; largest probability change vs fp32 "
        f"{change:.3f}, predicted class unchanged at {agree:.0%} of positions ('auto' runs fp32 on this model)"
    )


if __name__ == "__main__":
    main()
