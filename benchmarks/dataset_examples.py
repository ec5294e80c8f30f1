"""Timings of "What units look for": `.venv/bin/python -m benchmarks.dataset_examples`.

Every number comes with a baseline from the same run (this CPU is shared, so absolute
seconds drift with the load; ratios much less):
- the Fashion-MNIST CNN's table (every unit of every layer, k = 100) on the 10k test
  images, against plain forward passes of the same images, then loading the stored table;
- VGG-16 on the 200 bundled photos at 224 px: the table against plain forward passes of
  the same pre-processed batches (the bookkeeping must not dominate);
- one VGG-16 unit's 9 patches with projections, then the same from the page's cache.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch

from app.analyses import dataset_examples as D
from app.networks.batches import model_inputs
from app.networks.datasets import load_fashion_mnist
from app.networks.loaded import LoadedModel
from app.networks.models import get_model
from app.serving.lru import ResultStore

CPU: list[float] = []


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    CPU[:] = [time.process_time() - cpu]
    return time.perf_counter() - start, out


def plain(model: LoadedModel, batches: list[torch.Tensor]) -> None:
    """The baseline: the shared module's forward pass, fp32, channels_last, nothing kept."""
    with model.lock, torch.inference_mode():
        for x in batches:
            model.module(x.to(model.device, memory_format=torch.channels_last))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=200, help="bundled photos for the VGG-16 table")
    parser.add_argument("--skip-vgg", action="store_true")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    fashion = get_model("fashion_cnn")
    images, _ = load_fashion_mnist("test")
    batches = list(model_inputs(fashion, images, 128))  # the batch the table uses
    plain(fashion, batches[:2])  # warm-up
    t_plain, _ = timed(lambda: plain(fashion, batches))
    print(f"Fashion CNN, plain forward passes of 10k test images: {t_plain:.2f} s [cpu {CPU[0]:.1f} s]")
    with tempfile.TemporaryDirectory() as store:
        os.environ["CNN_LENS_CACHE"] = store
        t_table, table = timed(lambda: D.fashion_test_table(fashion))
        print(
            f"Fashion CNN table, {len(table.layers)} layers, k={table.k}, 10k images (target < 15 s): "
            f"{t_table:.2f} s [cpu {CPU[0]:.1f} s] = {t_table / t_plain:.2f}x the plain passes"
        )
        t_load, _ = timed(lambda: D.fashion_test_table(fashion))
        print(f"loading the stored table (target < 0.5 s): {t_load:.3f} s")

    if args.skip_vgg:
        return
    torch.manual_seed(0)
    vgg = get_model("vgg16", weights=None)
    photos = [p.image for p in D.bundled_photos()][: args.photos]
    t_prep, batches = timed(lambda: list(model_inputs(vgg, photos, 16)))
    print(f"VGG-16: pre-processing {len(photos)} photos: {t_prep:.2f} s")
    plain(vgg, batches[:1])  # warm-up
    t_plain, _ = timed(lambda: plain(vgg, batches))
    print(f"VGG-16, plain forward passes of {len(photos)} photos at 224 px: {t_plain:.2f} s [cpu {CPU[0]:.1f} s]")
    t_table, table = timed(lambda: D.top_units_table(vgg, batches, k=D.LABEL_TOP, total=len(photos)))
    print(
        f"VGG-16 table, {len(table.layers)} layers, k={table.k} (target within 1.3x): {t_table:.2f} s "
        f"[cpu {CPU[0]:.1f} s] = {t_table / t_plain:.2f}x the plain passes"
    )
    store = ResultStore()
    x = torch.cat(batches)

    def nine() -> list[D.Example]:
        return store.get_or_compute(
            ("examples", "relu4_3", 5), lambda: D.unit_examples(vgg, table, lambda idx: x[idx], "relu4_3", 5, 9)
        )

    t_nine, examples = timed(nine)
    cpu_nine = CPU[0]
    t_again, _ = timed(nine)
    print(
        f"VGG-16, one unit's {len(examples)} patches with projections (target < 3 s): {t_nine:.2f} s "
        f"[cpu {cpu_nine:.1f} s]; from the cache: {t_again * 1000:.2f} ms"
    )


if __name__ == "__main__":
    main()
