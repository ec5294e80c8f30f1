"""Compute what does not depend on any student's image before students arrive (`make warm`).

The Fashion-MNIST test-set maps (t-SNE at the page's default perplexity, and PCA) are
stored on disk by app.embedding, keyed by the weights, so the first student to open
Feature space reads a file instead of waiting for a t-SNE of 10,000 points. `make run`
and the Docker build run this; a second run finds the files and returns at once.

    python -m scripts.warm_cache [--all-perplexities]

--all-perplexities also stores a t-SNE map for every perplexity the page offers, so no
choice of a student waits (each map takes about a minute of one core, measured).
"""

from __future__ import annotations

import argparse
import time

from app import embedding as E
from app.models import get_model

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
    print(f"stored in {E.store_dir()}")


if __name__ == "__main__":
    main()
