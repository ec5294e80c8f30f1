"""Compute what does not depend on any student's image before students arrive (`make warm`).

Every unit table, the view What units look for opens on, and the Feature space maps of
every model and data set the pages offer (app.analyses.warm lists them), including the
teacher's collections, are stored in $CNN_LENS_CACHE (app.serving.store), keyed by the
weights, so a fresh server's first student reads files instead of waiting minutes. `make
run` and the Docker build run this; a second run finds the files and only reads them.

    python -m scripts.warm_cache [--models vgg16,fashion_cnn] [--only units,views,maps] [--all-perplexities]

--all-perplexities also stores a t-SNE map for every perplexity Feature space offers, so no
choice of a student waits (about a minute of one core per Fashion-MNIST map, measured).
Files of a collection that cannot be used are listed and skipped; they stop nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from app.analyses import dataset_examples as D
from app.analyses import embedding as E
from app.analyses import warm
from app.base.errors import LensError
from app.networks.collections import TeacherCollection, collection_folders, load_teacher_collection
from app.networks.loaded import LoadedModel
from app.networks.models import get_model_or_untrained, model_names
from app.serving import store


def bundled_photos() -> warm.DataSet:
    photos = D.bundled_photos()
    title = f"the bundled photos ({len(photos)} crops)"
    return warm.DataSet(D.photos_name(), title, [p.image for p in photos])


def load_models(names: list[str]) -> list[LoadedModel]:
    out = []
    for name in names:
        model, warning = get_model_or_untrained(name)
        if warning:
            print(f"{name}: {warning}\n  Warming its untrained weights (the ones the app shows without them).")
        out.append(model)
    return out


def load_collections() -> list[TeacherCollection]:
    """The teacher's collections that can be used, each file left out and each broken one reported."""
    try:
        folders = collection_folders()
    except LensError as exc:
        print(f"Collections are off: {exc}")
        return []
    out = []
    for name, folder in folders.items():
        try:
            loaded = load_teacher_collection(name, folder)
        except LensError as exc:
            print(f"Collection {name!r} ({folder}) left out: {exc}")
            continue
        print(f"Collection {name!r}: {len(loaded.collection.items)} images from {folder}")
        for skipped in loaded.collection.skipped:
            print(f"  skipped {skipped.name}: {skipped.reason}")
        out.append(loaded)
    return out


def progress_line(what: str) -> Callable[[int, int], None]:
    """A progress bar on one terminal line, with the time left for this task."""
    start = time.monotonic()

    def report(done: int, total: int) -> None:
        elapsed = time.monotonic() - start
        left = f", about {elapsed * (total - done) / done:.0f} s left" if 0 < done < total else ""
        filled = round(20 * min(done / max(total, 1), 1.0))
        sys.stdout.write(f"\r  [{'#' * filled}{'.' * (20 - filled)}] {what}: {done:,}/{total:,}{left}   ")
        sys.stdout.flush()

    return report


def main(argv: list[str] | None = None) -> None:
    names = list(model_names())
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(names), help=f"comma-separated, from {', '.join(names)}")
    parser.add_argument("--only", default=",".join(warm.KINDS), help=f"comma-separated, from {', '.join(warm.KINDS)}")
    parser.add_argument("--all-perplexities", action="store_true", help="a t-SNE map for every page choice")
    args = parser.parse_args(argv)
    chosen, kinds = args.models.split(","), args.only.split(",")
    for wrong, allowed in ((set(chosen) - set(names), names), (set(kinds) - set(warm.KINDS), warm.KINDS)):
        if wrong:
            parser.error(f"unknown: {', '.join(sorted(wrong))}; choose from {', '.join(allowed)}")
    perplexities = E.PERPLEXITIES if args.all_perplexities else (E.DEFAULT_PERPLEXITY,)
    models = load_models(chosen)
    tasks = warm.plan(models, load_collections(), bundled_photos, kinds, perplexities)
    began = time.perf_counter()
    for i, task in enumerate(tasks, 1):
        what = f"[{i}/{len(tasks)}] {task.model}: {task.what}"
        writes, start, cpu = store.writes(), time.perf_counter(), time.process_time()
        task.run(progress_line(what))
        took, used = time.perf_counter() - start, time.process_time() - cpu
        done = "stored" if store.writes() > writes else "already stored, read"
        sys.stdout.write(f"\r{what}: {done} in {took:.1f} s ({used:.1f} CPU-s)" + " " * 30 + "\n")
    print(f"{len(tasks)} results ready in {time.perf_counter() - began:.0f} s, stored in {store.store_dir()}")


if __name__ == "__main__":
    main()
