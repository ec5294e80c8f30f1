"""Compute what does not depend on any student's image before students arrive (`make warm`).

The Fashion-MNIST test-set maps (t-SNE at the page's default perplexity, and PCA) and the
table of every unit's best test images are stored on disk (app.store), keyed by the
weights, so the first student to open Feature space or What units look for reads a file
instead of waiting for a t-SNE of 10,000 points or a pass over the test set. `make run`
and the Docker build run this; a second run finds the files and returns at once.
"""

from __future__ import annotations

import time

from app import dataset_examples as D
from app import embedding as E
from app.models import get_model
from app.store import store_dir

PRESETS = [("pca", E.map_params("pca")), ("tsne", E.map_params("tsne"))]


def main() -> None:
    model = get_model("fashion_cnn")
    for method, params in PRESETS:
        start = time.perf_counter()
        E.fashion_test_map(model, method, params)
        print(f"Fashion-MNIST test-set map, {method} {params}: ready in {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    D.fashion_test_table(model)
    print(f"Fashion-MNIST test-set unit table: ready in {time.perf_counter() - start:.1f} s")
    print(f"stored in {store_dir()}")


if __name__ == "__main__":
    main()
