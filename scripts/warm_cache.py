"""Compute what does not depend on any student's image before students arrive (`make warm`).

The Fashion-MNIST test-set maps (t-SNE at the page's default perplexity, and PCA) and the
table of every unit's best test images are stored on disk (app.serving.store), keyed by the
weights, so the first student to open Feature space or What units look for reads a file
instead of waiting for a t-SNE of 10,000 points or a pass over the test set. `make run`
and the Docker build run this; a second run finds the files and returns at once.

    python -m scripts.warm_cache [--all-perplexities]

--all-perplexities also stores a t-SNE map for every perplexity the page offers, so no
choice of a student waits (each map takes about a minute of one core, measured).
"""

from __future__ import annotations

import argparse
import time

from app.analyses import dataset_examples as D
from app.analyses import embedding as E
from app.networks.models import get_model
from app.serving.store import store_dir

PRESETS = [("pca", E.map_params("pca")), ("tsne", E.map_params("tsne"))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--all-perplexities", action="store_true", help="a t-SNE map for every page choice")
    args = parser.parse_args(argv)
    presets = list(PRESETS)
    if args.all_perplexities:
        presets += [("tsne", E.map_params("tsne", p)) for p in E.PERPLEXITIES if p != E.DEFAULT_PERPLEXITY]
    model = get_model("fashion_cnn")
    for method, params in presets:
        start = time.perf_counter()
        E.fashion_test_map(model, method, params)
        print(f"Fashion-MNIST test-set map, {method} {params}: ready in {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    D.fashion_test_table(model)
    print(f"Fashion-MNIST test-set unit table: ready in {time.perf_counter() - start:.1f} s")
    print(f"stored in {store_dir()}")


if __name__ == "__main__":
    main()
