"""Feature-space timings: `.venv/bin/python -m benchmarks.embedding`.

Every number comes with a baseline measured in the same run (this CPU is shared, so
absolute seconds drift with the load; ratios much less):
- penultimate features of the 10k Fashion-MNIST test set, model precision vs fp32,
  and the neighbour quality each gives (same-label fraction of 10 NN);
- the 10k t-SNE map as the app computes and stores it, then loading it again;
- openTSNE vs scikit-learn's TSNE on the same 2,000-point subset (scikit-learn on 10k
  takes many minutes here), plus openTSNE with 1 vs 2 threads;
- placing one new image into the stored 10k map (features + transform);
- a collection of 200 photos through VGG-16 (features + t-SNE).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import openTSNE
import torch
from sklearn.manifold import TSNE, trustworthiness

from app.analyses import embedding as E
from app.base.errors import WeightsUnavailableError
from app.networks.datasets import load_fashion_mnist
from app.networks.models import get_model
from tests.conftest import photo

CPU: list[float] = []  # process CPU seconds of the last timed call (the load on a shared CPU inflates wall time)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    CPU[:] = [time.process_time() - cpu]
    return time.perf_counter() - start, out


def cpu() -> str:
    return f"[cpu {CPU[0]:.1f} s]"


def same_label_fraction(feats: np.ndarray, labels: np.ndarray, n_queries: int = 1000) -> float:
    queries = np.random.default_rng(0).choice(len(feats), n_queries, replace=False)
    idx, _ = E.nearest(feats[queries], feats, 10, "l2", exclude=queries)
    return float((labels[idx] == labels[queries, None]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=int, default=2000, help="points for the openTSNE vs scikit-learn race")
    parser.add_argument("--collection", type=int, default=200, help="photos for the VGG-16 collection")
    parser.add_argument("--sklearn-10k", action="store_true", help="also time scikit-learn on all 10k points (minutes)")
    args = parser.parse_args()
    print(
        f"torch threads {torch.get_num_threads()}, cpu count {os.cpu_count()}, load {os.getloadavg()[0]:.1f}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')} (PASSIVE avoids threads spinning on a busy CPU)"
    )

    try:
        fashion = get_model("fashion_cnn")
    except WeightsUnavailableError:
        torch.manual_seed(0)
        fashion = get_model("fashion_cnn", weights=None)
    print(f"Fashion CNN: {fashion.weights}")
    images, labels_t = load_fashion_mnist("test")
    labels = labels_t.numpy()

    E.features(fashion, images[:256])  # build the graph, warm up oneDNN
    t_auto, f_auto = timed(lambda: E.features(fashion, images))
    auto_cpu = cpu()
    t_fp32, f_fp32 = timed(lambda: E.features(fashion, images, precision="fp32"))
    pix = E.pixels(fashion, images)
    print(
        f"features 10k: model precision ({fashion.precision}) {t_auto:.2f} s {auto_cpu}, fp32 {t_fp32:.2f} s {cpu()} "
        f"(ratio {t_fp32 / t_auto:.2f}x)"
    )
    print(
        f"same-label fraction of 10 NN (L2, 1000 queries): features {same_label_fraction(f_auto, labels):.4f} "
        f"(fp32 {same_label_fraction(f_fp32, labels):.4f}), raw pixels {same_label_fraction(pix, labels):.4f}"
    )

    with tempfile.TemporaryDirectory() as store:
        os.environ["CNN_LENS_CACHE"] = store
        t_first, (fmap, _, feats) = timed(lambda: E.fashion_test_map(fashion, "tsne", {"perplexity": 30}))
        first_cpu = cpu()
        t_load, _ = timed(lambda: E.fashion_test_map(fashion, "tsne", {"perplexity": 30}))
        size = sum(os.path.getsize(os.path.join(store, f)) for f in os.listdir(store)) / 1e6
        print(
            f"stored 10k t-SNE map: first computation {t_first:.1f} s {first_cpu} (features + openTSNE FFT), "
            f"load {t_load:.3f} s ({t_first / t_load:.0f}x faster), file {size:.1f} MB"
        )
        t_pca, _ = timed(lambda: E.fashion_test_map(fashion, "pca"))
        print(f"stored 10k PCA map: first computation {t_pca:.1f} s {cpu()}")

        new_image = photo((120, 160), seed=3)
        t_place, _ = timed(lambda: fmap.transform(E.features(fashion, [new_image])))
        place_cpu = cpu()
        t_place2, _ = timed(lambda: fmap.transform(E.features(fashion, [photo((90, 90), seed=4)])))
        print(f"placing one new image into the 10k map: {t_place:.2f} s {place_cpu}, again {t_place2:.2f} s {cpu()}")

    if args.sklearn_10k:
        t_sk10, _ = timed(lambda: TSNE(perplexity=30, init="pca", random_state=0).fit_transform(feats))
        sk10_cpu = cpu()
        t_open10, _ = timed(lambda: E.tsne_map(feats))
        print(
            f"t-SNE of all 10k points: openTSNE {t_open10:.1f} s {cpu()}, scikit-learn {t_sk10:.1f} s {sk10_cpu} "
            f"-> openTSNE {t_sk10 / t_open10:.1f}x faster"
        )

    sub = np.random.default_rng(0).choice(len(feats), args.subset, replace=False)
    x = feats[sub].astype(np.float64)
    t_open, m_open = timed(lambda: E.tsne_map(x))
    open_cpu = cpu()
    t_open2, _ = timed(
        lambda: openTSNE.TSNE(
            n_jobs=2, random_state=0, negative_gradient_method="bh" if len(x) < E.FFT_FROM else "fft"
        ).fit(x)
    )
    t_sk, y_sk = timed(lambda: TSNE(perplexity=30, init="pca", random_state=0).fit_transform(x))
    sk_cpu = cpu()
    print(
        f"t-SNE of {args.subset} points: openTSNE ({E.N_JOBS} thread) {t_open:.1f} s {open_cpu}, "
        f"with 2 threads {t_open2:.1f} s, scikit-learn {t_sk:.1f} s {sk_cpu} -> openTSNE {t_sk / t_open:.1f}x faster"
    )
    print(
        f"trustworthiness (10 NN) on that subset: openTSNE {trustworthiness(x, m_open.coords, n_neighbors=10):.4f}, "
        f"scikit-learn {trustworthiness(x, y_sk, n_neighbors=10):.4f}"
    )

    torch.manual_seed(0)
    vgg = get_model("vgg16", weights=None)  # timings do not depend on the weights
    photos = [photo((320, 240), seed=s) for s in range(args.collection)]
    E.features(vgg, photos[:2])
    t_vgg, f_vgg = timed(lambda: E.features(vgg, photos))
    vgg_cpu = cpu()
    t_map, _ = timed(lambda: E.tsne_map(f_vgg))
    map_cpu = cpu()
    t_vgg32, _ = timed(lambda: E.features(vgg, photos[:16], precision="fp32"))
    t_vgg16, _ = timed(lambda: E.features(vgg, photos[:16]))
    print(
        f"VGG-16 collection of {args.collection}: features {t_vgg:.1f} s {vgg_cpu} + t-SNE {t_map:.1f} s {map_cpu} "
        f"= {t_vgg + t_map:.1f} s; 16 images in {vgg.precision} {t_vgg16:.2f} s "
        f"vs fp32 {t_vgg32:.2f} s ({t_vgg32 / t_vgg16:.1f}x)"
    )


if __name__ == "__main__":
    main()
