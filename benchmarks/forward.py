"""Prediction + all activations of one 224 px image on VGG-16: which precision path is fastest?

Each path is one forward pass that returns every layer (fc8 = the prediction).
Prints seconds per path and ratios to plain fp32 measured in the same run, plus
how far each path's top-5 probabilities are from fp32's. Without pretrained
weights (no internet) the network is a seeded random VGG-16 whose last layer is
sharpened so its predictions are peaked like a trained network's; pass
--weights PATH to measure with real weights.

    python -m benchmarks.forward [--weights vgg16.pth] [--repeats 5]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torchvision.models.feature_extraction import create_feature_extractor

from app.networks.activations import activations
from app.networks.models import get_model
from app.serving import precision
from tests.conftest import photo


def _time(fn, repeats: int) -> float:
    fn()  # warm-up: oneDNN picks kernels on the first call
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def _top5_error(reference: torch.Tensor, other: torch.Tensor) -> float:
    """Largest relative difference over fp32's top-5 probabilities."""
    p, q = reference.softmax(-1)[0], other.softmax(-1)[0]
    top = p.topk(5).indices
    return float(((q[top] - p[top]).abs() / p[top]).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", default=None)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = get_model("vgg16", weights=args.weights)
    if args.weights is None:
        with torch.no_grad():
            model.module.classifier[-1].weight.mul_(40)  # peaked softmax, like a trained net
    x = model.preprocess(photo((320, 240)))
    nodes = {r.path: r.name for r in model.layers}
    contiguous = create_feature_extractor(copy.deepcopy(model.module).to(memory_format=torch.contiguous_format), nodes)

    def plain_fp32():
        with torch.inference_mode():
            return contiguous(x)

    def run(precision: str):
        return lambda: activations(model, x, precision)

    paths = {"fp32 (NCHW)": plain_fp32, "fp32 channels_last": run("fp32")}
    if precision.bf16_fast(model.device.type):
        paths["bf16 autocast + channels_last"] = run("bf16")
    start = time.perf_counter()
    run("fp32")()
    cold = time.perf_counter() - start
    reference = plain_fp32()["fc8"]
    print(f"device {model.device}, bf16 native: {precision.bf16_fast(model.device.type)}, weights: {model.weights}")
    print(f"cold first call (graph build + kernel choice), fp32 channels_last: {cold:.2f} s")
    base = None
    for name, fn in paths.items():
        seconds = _time(fn, args.repeats)
        base = base or seconds
        logits = fn()["fc8"]
        print(
            f"{name:32s} {seconds:7.3f} s   x{base / seconds:5.2f} vs fp32   "
            f"top-5 max rel. diff {_top5_error(reference, logits):.2e}"
        )
    print("(each line: ONE forward pass giving the prediction (fc8) and all 39 layer outputs)")


if __name__ == "__main__":
    main()
