"""Compute what does not depend on any student's image before students arrive (`make warm`).

The Fashion-MNIST test-set maps (t-SNE at the page's default perplexity, and PCA) are
stored on disk by app.embedding, keyed by the weights, so the first student to open
Feature space reads a file instead of waiting for a t-SNE of 10,000 points. `make run`
and the Docker build run this; a second run finds the files and returns at once.
"""

from __future__ import annotations

import time

from app import embedding as E
from app.models import get_model

PRESETS = [("pca", E.map_params("pca")), ("tsne", E.map_params("tsne"))]


def main() -> None:
    model = get_model("fashion_cnn")
    for method, params in PRESETS:
        start = time.perf_counter()
        E.fashion_test_map(model, method, params)
        print(f"Fashion-MNIST test-set map, {method} {params}: ready in {time.perf_counter() - start:.1f} s")
    print(f"stored in {E.store_dir()}")


if __name__ == "__main__":
    main()
