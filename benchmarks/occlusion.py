"""Occlusion maps: app.analyses.occlusion against captum's `Occlusion`, in the same process.

Run: .venv/bin/python -m benchmarks.occlusion [--repeats N] [--skip-captum-stride-8]

VGG-16 at 224 px, 32 px window, stride 16 (169 positions): captum (fp32,
perturbations_per_eval=16, the baseline) against `occlusion_map` in "exact" (fp32,
incremental) and "auto" (bf16 where the hardware has it, incremental) modes, and
the plain batched method (fp32, whole images, no incremental inference) to show
what each idea contributes. Then stride 8 (625 positions) in auto mode, and the
Fashion-MNIST CNN at stride 1 (576 positions, 5 px window).

Each time is the median of N runs after a warm-up run. Wall and CPU seconds are
both printed: on a machine shared with other jobs, CPU time (all threads of this
process) is the steadier measure of the work; ratios are given for both. The
exact mode's largest deviation from captum's attribution (relative to the score
range) and the auto mode's fidelity (Pearson of the target-score maps,
predicted-class agreement) are printed alongside.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
from captum.attr import Occlusion

from app.analyses import occlusion as occ
from app.networks.loaded import LoadedModel
from app.networks.models import get_model_or_untrained
from app.serving import precision
from tests.conftest import photo


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float, object]:
    """(median wall seconds, median CPU seconds of this process, last result)."""
    out = fn()  # warm-up: traces the graph, primes oneDNN kernels
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        out = fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu), out


def captum_run(model: LoadedModel, x: torch.Tensor, target: int, window: int, stride: int) -> Callable[[], np.ndarray]:
    c = model.channels

    def call() -> np.ndarray:
        with model.lock, torch.no_grad():
            attr = Occlusion(model.module).attribute(
                x,
                target=target,
                sliding_window_shapes=(c, window, window),
                strides=(c, stride, stride),
                baselines=0.0,
                perturbations_per_eval=16,
            )
        return attr[0, 0].numpy()

    return call


def ours(model: LoadedModel, x: torch.Tensor, window: int, stride: int, precision: str, incremental: bool = True):
    return lambda: occ.occlusion_map(model, x, window, stride, precision=precision, incremental=incremental)


def row(name: str, wall: float, cpu: float, ref: tuple[float, float] | None, note: str = "") -> None:
    ratio = f"{ref[0] / wall:6.1f}x {ref[1] / cpu:6.1f}x" if ref else f"{'-':>7} {'-':>7}"
    print(f"{name:44} {wall:8.2f} {cpu:8.1f}   {ratio}  {note}")


def fidelity(exact: occ.OcclusionResult, auto: occ.OcclusionResult, target: int) -> str:
    pearson = np.corrcoef(exact.logits[..., target].ravel(), auto.logits[..., target].ravel())[0, 1]
    agree = (occ.predicted_class_map(exact) == occ.predicted_class_map(auto)).mean()
    return f"vs exact: Pearson {pearson:.4f}, class map {agree:.1%} identical"


def captum_gap(result: occ.OcclusionResult, captum_attr: np.ndarray, target: int) -> str:
    ours_attr = occ.captum_attribution(result, target, captum_attr.shape)
    scores = result.logits[..., target]
    gap = np.abs(ours_attr - captum_attr).max() / float(scores.max() - scores.min())
    return f"max |diff| vs captum = {gap:.1e} of score range"


def vgg_section(repeats: int, captum_stride_8: bool) -> None:
    torch.manual_seed(0)
    model, why = get_model_or_untrained("vgg16")
    x = model.preprocess(photo((320, 240)))
    target = int(model.logits(x, "exact")[0].argmax())
    print(f"VGG-16 ({model.weights}{'; ' + why if why else ''}), input {tuple(x.shape)}, target {target}")
    print(f"torch threads {torch.get_num_threads()}, 'auto' precision here = {precision.resolve('auto', model.device)}")
    print(f"\n{'window 32, stride 16 (169 positions)':44} {'wall s':>8} {'CPU s':>8}   {'speed-up (wall, CPU)':>16}")
    wall_c, cpu_c, attr_c = timed(captum_run(model, x, target, 32, 16), repeats)
    ref = (wall_c, cpu_c)
    row("captum Occlusion (fp32, 16 per eval)", wall_c, cpu_c, None)
    wall, cpu, plain = timed(ours(model, x, 32, 16, "exact", incremental=False), repeats)
    row("occlusion_map plain batched fp32", wall, cpu, ref, captum_gap(plain, attr_c, target))
    wall, cpu, exact = timed(ours(model, x, 32, 16, "exact"), repeats)
    row("occlusion_map exact (fp32, incremental)", wall, cpu, ref, captum_gap(exact, attr_c, target))
    wall, cpu, auto = timed(ours(model, x, 32, 16, "auto"), repeats)
    row("occlusion_map auto (incremental)", wall, cpu, ref, fidelity(exact, auto, target))
    estimate = occ.estimate_seconds(model, 32, 8)

    print(f"\n{'window 32, stride 8 (625 positions)':44} {'wall s':>8} {'CPU s':>8}")
    ref8 = None
    if captum_stride_8:
        wall_c8, cpu_c8, _ = timed(captum_run(model, x, target, 32, 8), 0)
        ref8 = (wall_c8, cpu_c8)
        row("captum Occlusion (fp32, 16 per eval)", wall_c8, cpu_c8, None)
    wall, cpu, _ = timed(ours(model, x, 32, 8, "auto"), repeats)
    row("occlusion_map auto (incremental)", wall, cpu, ref8, f"estimate beforehand: {estimate:.1f} s")


def fashion_section(repeats: int) -> None:
    model, why = get_model_or_untrained("fashion_cnn")
    x = model.preprocess(photo((28, 28)))
    target = int(model.logits(x, "exact")[0].argmax())
    print(f"\nFashion-MNIST CNN ({model.weights}{'; ' + why if why else ''})")
    print(f"{'window 5, stride 1 (576 positions)':44} {'wall s':>8} {'CPU s':>8}")
    wall_c, cpu_c, attr_c = timed(captum_run(model, x, target, 5, 1), repeats)
    ref = (wall_c, cpu_c)
    row("captum Occlusion (fp32, 16 per eval)", wall_c, cpu_c, None)
    wall, cpu, plain = timed(ours(model, x, 5, 1, "exact", incremental=False), repeats)
    row("occlusion_map plain batched fp32", wall, cpu, ref, captum_gap(plain, attr_c, target))
    wall, cpu, exact = timed(ours(model, x, 5, 1, "exact"), repeats)
    row("occlusion_map exact (fp32, incremental)", wall, cpu, ref, captum_gap(exact, attr_c, target))
    wall, cpu, auto = timed(ours(model, x, 5, 1, "auto"), repeats)
    row("occlusion_map auto (incremental)", wall, cpu, ref, fidelity(exact, auto, target))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--captum-stride-8", action="store_true", help="also time captum at stride 8 (~2 min)")
    parser.add_argument("--fashion-only", action="store_true")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning, module="captum")
    if not args.fashion_only:
        vgg_section(args.repeats, args.captum_stride_8)
    fashion_section(max(args.repeats, 3))
    print("\nspeed-up = captum's seconds / ours (higher is faster), from wall time and from CPU time")


if __name__ == "__main__":
    main()
