"""Attribution maps on VGG-16 at 224 px: app.analyses.attribution against captum's own calls.

Run: .venv/bin/python -m benchmarks.attribution [--repeats N]

Times each map (the median of N calls after one warm-up call) and captum's
equivalent call on the same input in the same run, both fp32, and prints the
ratios and how far the maps differ. Both wall time and the process's CPU time
are shown: on a machine shared with other jobs, CPU time is the steadier measure
of the work done (on an idle machine, wall time is about CPU time / threads).
Untrained VGG-16 weights are used unless pretrained ones are available (the
timing does not depend on the weights).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
from captum.attr import GuidedBackprop, GuidedGradCam, LayerAttribution, LayerGradCam, NoiseTunnel, Saliency
from PIL import Image

from app.analyses import attribution as attr
from app.networks.loaded import LoadedModel
from app.networks.models import get_model_or_untrained

SMOOTHGRAD_SAMPLES = 16
NOISE = 0.15


def timed(fn: Callable[[], np.ndarray], repeats: int) -> tuple[float, float, np.ndarray]:
    """(median wall seconds, median CPU seconds of this process, result)."""
    out = fn()  # warm-up: builds graphs, primes oneDNN kernels
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        out = fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu), out


def test_image() -> Image.Image:
    """A smooth synthetic picture (no image files needed)."""
    yy, xx = np.mgrid[0:240, 0:320]
    disc = ((xx - 170) ** 2 + (yy - 110) ** 2 < 60**2).astype(float)
    return Image.fromarray((np.stack([xx / 320, yy / 240, disc], -1) * 255).astype(np.uint8))


def captum_maps(model: LoadedModel, x: torch.Tensor, target: int) -> dict[str, Callable[[], np.ndarray]]:
    net = model.module
    layer = net.get_submodule(model.layer(attr.default_cam_layer(model)).path)
    sigma = NOISE * float(x.max() - x.min())

    def run(fn: Callable[[], torch.Tensor]) -> Callable[[], np.ndarray]:
        def call() -> np.ndarray:
            with model.lock:  # captum hooks the shared module
                return fn().detach().numpy()

        return call

    def four() -> torch.Tensor:
        sal = Saliency(net).attribute(x.clone(), target=target)[0].amax(0)
        guided = GuidedBackprop(net).attribute(x.clone(), target=target)[0]
        coarse = LayerGradCam(net, layer).attribute(x.clone(), target=target, relu_attributions=True)
        cam = LayerAttribution.interpolate(coarse, tuple(x.shape[-2:]), "bilinear")[0, 0]
        guided_cam = GuidedGradCam(net, layer).attribute(x.clone(), target=target, interpolate_mode="bilinear")[0]
        return torch.cat([sal.ravel(), guided.ravel(), cam.ravel(), guided_cam.ravel()])

    return {
        "saliency": run(lambda: Saliency(net).attribute(x.clone(), target=target)[0].amax(0)),
        "guided backprop": run(lambda: GuidedBackprop(net).attribute(x.clone(), target=target)[0]),
        "Grad-CAM": run(
            lambda: LayerAttribution.interpolate(
                LayerGradCam(net, layer).attribute(x.clone(), target=target, relu_attributions=True),
                tuple(x.shape[-2:]),
                "bilinear",
            )[0, 0]
        ),
        f"SmoothGrad {SMOOTHGRAD_SAMPLES}": run(
            lambda: (
                NoiseTunnel(Saliency(net))
                .attribute(
                    x.clone(),
                    target=target,
                    nt_type="smoothgrad",
                    nt_samples=SMOOTHGRAD_SAMPLES,
                    nt_samples_batch_size=4,
                    stdevs=sigma,
                )[0]
                .amax(0)
            )
        ),
        "all four class maps (Compare tab)": run(four),
    }


def our_maps(model: LoadedModel, x: torch.Tensor, target: int) -> dict[str, Callable[[], np.ndarray]]:
    return {
        "saliency": lambda: attr.saliency(model, x, target),
        "guided backprop": lambda: attr.guided_backprop(model, x, target=target),
        "Grad-CAM": lambda: attr.grad_cam(model, x, target),
        f"SmoothGrad {SMOOTHGRAD_SAMPLES}": lambda: attr.saliency(
            model, x, target, smoothgrad_samples=SMOOTHGRAD_SAMPLES, noise=NOISE
        ),
        "all four class maps (Compare tab)": lambda: np.concatenate(
            [m.ravel() for m in attr.class_maps(model, x, target).values()]
        ),
        "guided backprop, channel (conv4_3)": lambda: attr.guided_backprop(model, x, layer="conv4_3", channel=7),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning, module="captum")  # "setting hooks on ReLUs" etc.

    torch.manual_seed(0)
    model, why = get_model_or_untrained("vgg16")
    x = model.preprocess(test_image())
    target = int(model.logits(x, "exact")[0].argmax())
    print(f"VGG-16 ({model.weights}{'; ' + why if why else ''}), input {tuple(x.shape)}, target {target}")
    print(f"torch threads {torch.get_num_threads()}, repeats {args.repeats}\n")

    baseline = captum_maps(model, x, target)
    ours = our_maps(model, x, target)
    print("seconds: wall (CPU time of all threads)")
    print(f"{'map':34} {'captum':>13} {'ours':>13} {'ratio':>6}  max |ours - captum| / max |captum|")
    for name, fn in ours.items():
        wall, cpu, ours_map = timed(fn, args.repeats)
        if name not in baseline:
            print(f"{name:34} {'-':>13} {wall:6.2f} ({cpu:5.1f}) {'-':>6}  (captum has no channel objective)")
            continue
        wall_c, cpu_c, captum_map = timed(baseline[name], args.repeats)
        # captum draws its own SmoothGrad noise, so those two maps are not expected to agree
        diff = np.abs(ours_map - captum_map).max() / np.abs(captum_map).max()
        diff_col = "- (different noise)" if name.startswith("SmoothGrad") else f"{diff:.1e}"
        print(f"{name:34} {wall_c:6.2f} ({cpu_c:5.1f}) {wall:6.2f} ({cpu:5.1f}) {cpu / cpu_c:6.2f}  {diff_col}")
    print("\nratio = our CPU seconds / captum's (lower is faster)")


if __name__ == "__main__":
    main()
