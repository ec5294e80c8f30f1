"""What `make warm` computes before class: every image-independent view a page opens on.

A page's first visitor should read a file, not start a pass over a data set. This module
lists that work as tasks, each a call of the same stored function, with the same
arguments, that the page makes (app.serving.store keys them by the weights' digest and
a format version), so whatever a task stored is exactly what the page then reads:

- units: the table of every unit's best images, per model and data set (the
  Fashion-MNIST test set for the Fashion CNN; the bundled photos and each of the
  teacher's collections for every ImageNet network);
- views: on each such table, the view What units look for opens on (the default
  layer's channel 0: its nine best patches with projections, and the first page of the
  layer overview);
- maps: the Feature space maps the page offers by default (t-SNE at the default
  perplexity and PCA; every perplexity on request) of the Fashion test set, and of each
  teacher's collection for every ImageNet network, with the collection's feature vectors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from PIL import Image

from app.analyses import dataset_examples as D
from app.analyses import embedding as E
from app.networks.collections import TeacherCollection
from app.networks.datasets import FASHION_TEST
from app.networks.loaded import LoadedModel
from app.serving.progress import Progress

KINDS = ("units", "views", "maps")
SHOWN = 9  # best images the units page shows for a unit
OVERVIEW_PAGE = 64  # channels per page of the units page's layer overview


@dataclass(frozen=True)
class Task:
    kind: str  # one of KINDS
    model: str  # the network's registry name
    what: str  # what is computed, for the teacher's terminal
    run: Callable[[Progress | None], object]


@dataclass(frozen=True)
class DataSet:
    """Images a network's units and maps are computed on, under their name in the store."""

    name: str  # the store's name for it: changes with its content
    title: str
    images: Sequence[Image.Image]


def default_view(
    model: LoadedModel, table: D.TopTable, data: str, inputs: Callable[[list[int]], object]
) -> tuple[str, list[D.Example], list]:
    """The view What units look for opens on, kept in the store: (layer, its channel 0's examples,
    the first page of its overview). The page asks for exactly these."""
    layer = D.default_layer(model, table.layers)
    shown = range(0, min(OVERVIEW_PAGE, table.channels(layer)))
    examples = D.unit_examples(model, table, inputs, layer, 0, SHOWN, keep_as=data)
    return layer, examples, D.best_patches(model, table, inputs, layer, shown, keep_as=data)


def fashion_tasks(model: LoadedModel, perplexities: Sequence[float]) -> list[Task]:
    """The Fashion-MNIST test set's unit table, default view and maps for a Fashion-MNIST network."""

    def view(progress: Progress | None) -> object:
        table = D.fashion_test_table(model, progress=progress)
        return default_view(model, table, FASHION_TEST, lambda idx: D.fashion_inputs(model, idx))

    tasks = [
        Task(
            "units",
            model.name,
            "unit table of the Fashion-MNIST test set",
            lambda p: D.fashion_test_table(model, progress=p),
        ),
        Task("views", model.name, "units page's first view of the Fashion-MNIST test set", view),
    ]
    for method, perplexity in _maps(perplexities):
        tasks.append(
            Task(
                "maps",
                model.name,
                f"Fashion-MNIST test-set map, {_map_title(method, perplexity)}",
                lambda p, m=method, q=perplexity: E.fashion_test_map(model, m, E.map_params(m, q), progress=p),
            )
        )
    return tasks


def image_tasks(model: LoadedModel, data: DataSet, maps: bool, perplexities: Sequence[float]) -> list[Task]:
    """A photo data set's unit table and default view, and (maps=True) its feature vectors and maps."""
    images = data.images

    def table(progress: Progress | None) -> D.TopTable:
        return D.images_table(model, images, progress, keep_as=data.name)

    def view(progress: Progress | None) -> object:
        inputs = lambda idx: D.photo_inputs(model, [images[i] for i in idx])  # noqa: E731
        return default_view(model, table(progress), data.name, inputs)

    tasks = [
        Task("units", model.name, f"unit table of {data.title}", table),
        Task("views", model.name, f"units page's first view of {data.title}", view),
    ]
    if maps:
        for method, perplexity in _maps(perplexities):

            def run(progress: Progress | None, method: str = method, perplexity: float = perplexity) -> E.Map:
                feats, _, _ = E.kept_collection_vectors(model, images, data.name, progress)
                return E.collection_map(model, feats, method, perplexity, progress, keep_as=data.name)

            tasks.append(Task("maps", model.name, f"map of {data.title}, {_map_title(method, perplexity)}", run))
    return tasks


def plan(
    models: Sequence[LoadedModel],
    collections: Sequence[TeacherCollection],
    photos: Callable[[], DataSet],
    kinds: Sequence[str] = KINDS,
    perplexities: Sequence[float] = (E.DEFAULT_PERPLEXITY,),
) -> list[Task]:
    """Every task for these networks, in order, keeping only `kinds`.

    The Fashion CNN (one input channel) gets the Fashion-MNIST test set; every other
    (ImageNet) network the bundled photos (`photos()`, made only when needed) and each
    collection. The Fashion CNN's input is 28x28 grey, so it gets no collection of photos.
    """
    tasks: list[Task] = []
    needs_photos = any(m.channels != 1 for m in models) and {"units", "views"} & set(kinds)
    bundled = photos() if needs_photos else None
    for model in models:
        if model.channels == 1:
            tasks += fashion_tasks(model, perplexities)
            continue
        if bundled is not None:
            tasks += image_tasks(model, bundled, maps=False, perplexities=perplexities)
        for c in collections:
            data = DataSet(c.store_name, f"the collection {c.name!r}", c.collection.images)
            tasks += image_tasks(model, data, maps=True, perplexities=perplexities)
    return [t for t in tasks if t.kind in kinds]


def _maps(perplexities: Sequence[float]) -> list[tuple[str, float]]:
    """(method, perplexity) of each map: t-SNE at each perplexity, then PCA (which has none)."""
    return [("tsne", float(p)) for p in perplexities] + [("pca", E.DEFAULT_PERPLEXITY)]


def _map_title(method: str, perplexity: float) -> str:
    return f"t-SNE, perplexity {perplexity:g}" if method == "tsne" else "PCA"
