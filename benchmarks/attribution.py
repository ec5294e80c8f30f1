"""Attribution maps on VGG-16 at 224 px: app.attribution against captum's own calls.

Run: .venv/bin/python -m benchmarks.attribution [--repeats N]

Times each map (the median of N calls after one warm-up call) for our "exact"
(fp32) and "auto" (bf16 where the CPU has it) precisions, and captum's equivalent
call on the same input in the same run (fp32, its default), and prints the
ratios. Both wall time and the process's CPU time are shown: on a machine shared
with other jobs, CPU time is the steadier measure of the work done. The rank
correlation of the bf16 map with the fp32 map shows what the faster precision
costs in fidelity. Untrained VGG-16 weights are used unless pretrained ones are
available (the timing does not depend on the weights; the fidelity may).
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

from app import attribution as attr
from app import precision
from app.models import LoadedModel, get_model_or_untrained

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
    layer = net.get_submodule(model.layer(attr.last_conv(model)).path)
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


def our_maps(model: LoadedModel, x: torch.Tensor, target: int, prec: str) -> dict[str, Callable[[], np.ndarray]]:
    return {
        "saliency": lambda: attr.saliency(model, x, target, precision=prec),
        "guided backprop": lambda: attr.guided_backprop(model, x, target=target, precision=prec),
        "Grad-CAM": lambda: attr.grad_cam(model, x, target, precision=prec),
        f"SmoothGrad {SMOOTHGRAD_SAMPLES}": lambda: attr.saliency(
            model, x, target, smoothgrad_samples=SMOOTHGRAD_SAMPLES, noise=NOISE, precision=prec
        ),
        "all four class maps (Compare tab)": lambda: np.concatenate(
            [m.ravel() for m in attr.class_maps(model, x, target, precision=prec).values()]
        ),
        "guided backprop, channel (conv4_3)": lambda: attr.guided_backprop(
            model, x, layer="conv4_3", channel=7, precision=prec
        ),
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
    fast = precision.resolve("auto", model.device)
    print(f"VGG-16 ({model.weights}{'; ' + why if why else ''}), input {tuple(x.shape)}, target {target}")
    print(f"torch threads {torch.get_num_threads()}, 'auto' precision here = {fast}, repeats {args.repeats}\n")

    baseline = captum_maps(model, x, target)
    exact = our_maps(model, x, target, "exact")
    auto = our_maps(model, x, target, "auto")
    print("seconds: wall (CPU time of all threads); on an idle machine wall is about CPU / threads")
    print(f"{'map':34} {'captum':>13} {'exact':>13} {'ratio':>6} {'auto':>13} {'ratio':>6} {'rank corr':>9}")
    for name in exact:
        wall_exact, cpu_exact, m_exact = timed(exact[name], args.repeats)
        wall_auto, cpu_auto, m_auto = timed(auto[name], args.repeats)
        corr = attr.rank_correlation(np.abs(m_exact), np.abs(m_auto))
        ours = f"{wall_exact:6.2f} ({cpu_exact:5.1f})"
        fast_col = f"{wall_auto:6.2f} ({cpu_auto:5.1f})"
        if name in baseline:
            wall_captum, cpu_captum, m_captum = timed(baseline[name], args.repeats)
            theirs = f"{wall_captum:6.2f} ({cpu_captum:5.1f})"
            ratios = f"{cpu_exact / cpu_captum:6.2f}", f"{cpu_auto / cpu_captum:6.2f}"
            # SmoothGrad noise differs (captum draws its own), so only the exact maps are compared
            diff = np.abs(m_exact - m_captum).max() / np.abs(m_captum).max()
            note = "" if name.startswith("SmoothGrad") else f"  max diff vs captum {diff:.1e} of its max"
        else:
            theirs, ratios, note = "-", ("-", "-"), "  (captum has no channel objective)"
        print(f"{name:34} {theirs:>13} {ours:>13} {ratios[0]:>6} {fast_col:>13} {ratios[1]:>6} {corr:9.3f}{note}")
    print(
        "\nratio = our CPU seconds / captum's (lower is faster; CPU time is steadier than wall time on a shared "
        "machine); rank corr = Spearman of |auto map| vs |exact map|"
    )


if __name__ == "__main__":
    main()
