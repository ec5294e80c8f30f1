"""Feature space: penultimate-layer vectors, 2-D maps of them, and nearest neighbours.

The second-to-last layer is where a CNN has turned pixels into the description its
final classifier reads, so images the network sees as alike sit close together
there. This module computes those vectors (from our own fx graph, never hooks on the
shared module), reduces them to a 2-D map (t-SNE with openTSNE's FFT gradients, or
PCA) that can take in new points without being recomputed, finds neighbours with L1,
L2 or cosine distance, and keeps the Fashion-MNIST test-set maps and those of a teacher's
collections on disk (app.serving.store) so they are computed once per set of weights, not
once per visit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import openTSNE
import torch
from PIL import Image
from sklearn.decomposition import PCA

from app.networks.activations import truncated
from app.networks.batches import Images, model_inputs
from app.networks.datasets import FASHION_TEST, load_fashion_mnist
from app.networks.loaded import LoadedModel
from app.serving import precision as prec
from app.serving import sharing, store
from app.serving.progress import Progress

METRICS = ("l1", "l2", "cosine")
DEFAULT_PERPLEXITY = 30.0
PERPLEXITIES = (5, 10, 20, 30, 50)  # the Feature space page's choices
# openTSNE threads. One: the app's CPU is shared by many sessions, and there OpenMP
# threads spin-waiting for each other made t-SNE 4-8x slower than one thread (measured
# on a loaded 2-core CPU; with OMP_WAIT_POLICY=PASSIVE two threads were merely no faster).
N_JOBS = 1
FFT_FROM = 10_000  # points from which FFT gradients beat Barnes-Hut (openTSNE's "auto" rule)
_STORE_VERSION = 4  # bump when the stored format or the computation changes

_transform_lock = threading.Lock()
_GRID = ("interp_coeffs", "box_x_lower_bounds", "box_y_lower_bounds")  # openTSNE's FFT grid of a map


def _last_fc(model: LoadedModel) -> int:
    last_fc = max(i for i, row in enumerate(model.layers) if row.kind == "fc")
    if last_fc == 0 or last_fc != len(model.layers) - 1:
        raise ValueError(f"{model.name} does not end in a fully connected layer after other layers")
    return last_fc


def penultimate_layer(model: LoadedModel) -> str:
    """Name of the layer whose output feeds the final fully connected layer (e.g. dropout7 in VGG-16)."""
    return model.layers[_last_fc(model) - 1].name


def features(
    model: LoadedModel,
    images: Images,
    batch_size: int = 256,
    progress: Progress | None = None,
    precision: str | None = None,
) -> np.ndarray:
    """Penultimate-layer vectors, float32 [N, D] (D = 4096 for VGG-16, 128 for the Fashion CNN).

    Runs in the model's precision (bf16 where the CPU has it natively): the neighbour
    quality test checks that this keeps neighbours as good as fp32 would. Batches run
    beside other sessions' passes (app.serving.sharing), so no one waits for a whole data set.
    """
    name = penultimate_layer(model)
    graph = truncated(model, name)
    n = len(images)
    out: list[np.ndarray] = []
    done = 0
    for x in model_inputs(model, images, batch_size):
        with sharing.forward(), torch.inference_mode(), prec.autocast(model.device, precision or model.precision):
            f = graph(x.to(model.device, memory_format=torch.channels_last))[name]
        out.append(f.float().flatten(1).cpu().numpy())
        done += len(x)
        if progress:
            progress(done, n)
    if not out:
        raise ValueError("no images given")
    return np.concatenate(out)


def pixels(model: LoadedModel, images: Images, size: int | None = None) -> np.ndarray:
    """What the network sees, as 0-1 pixels flattened to [N, C*H*W]: the raw-pixel baseline space.

    size shrinks each input to size x size first (area average): 500 VGG inputs at
    224x224x3 would take 600 MB as float64 distances need, at 56x56 a sixteenth.
    """
    mean = torch.tensor(model.mean).view(1, -1, 1, 1)
    std = torch.tensor(model.std).view(1, -1, 1, 1)
    out = []
    for x in model_inputs(model, images, 256):
        x = (x * std + mean).clamp(0, 1)
        if size is not None and size != x.shape[-1]:
            x = torch.nn.functional.adaptive_avg_pool2d(x, size)
        out.append(x.flatten(1).numpy().astype(np.float32))
    return np.concatenate(out)


def predict(model: LoadedModel, feats: np.ndarray) -> np.ndarray:
    """Predicted class index [N] from penultimate features: the last fc layer is all that is left to run."""
    head = model.module.get_submodule(model.layers[_last_fc(model)].path)
    with sharing.forward(), torch.inference_mode():
        return head(torch.from_numpy(np.asarray(feats, dtype=np.float32))).argmax(1).numpy()


PIXEL_SIDE = 56  # pixel-space neighbours of photos larger than this are searched at 56x56 (memory)


def collection_vectors(
    model: LoadedModel, images: Sequence[Image.Image], progress: Progress | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, predicted classes, pixels) of uploaded images: the one computation behind a collection.

    A query image compared with a collection goes through this too (after
    images.collection_image), so it is prepared and computed as the collection's members
    are. Its vector equals its copy's only to rounding: oneDNN picks kernels by batch size
    and thread count (a copy in a batch of 5 and the query alone were 8.5e-07 apart on a
    busy machine), so a copy is recognised by its content (images.Collection.find).
    """
    feats = features(model, images, progress=progress)
    size = PIXEL_SIDE if model.input_size > PIXEL_SIDE else None
    return feats, predict(model, feats), pixels(model, images, size=size)


def labels_from_names(names: Sequence[str]) -> list[str] | None:
    """Labels from a collection's folders ("cats/1.jpg" -> "cats"), or None when not every file is in one.

    A teacher who zips a class's photos in one folder per category gets the map
    coloured by true label, as for Fashion-MNIST.
    """
    folders = [name.rsplit("/", 1)[0].rsplit("/", 1)[-1] if "/" in name else None for name in names]
    if any(f is None for f in folders) or len(set(folders)) < 2:
        return None
    return folders


@dataclass(eq=False)
class Map:
    """A 2-D map of feature vectors that can place new vectors without being recomputed.

    method is "tsne" or "pca"; params holds what produced it (perplexity, seed); for PCA
    explained_variance_ratio says how much of the spread the two axes keep.
    """

    coords: np.ndarray  # [N, 2] float64
    method: str
    params: dict[str, Any]
    explained_variance_ratio: tuple[float, float] | None = None
    _fitted: Any = field(default=None, repr=False)  # openTSNE TSNEEmbedding or sklearn PCA

    def transform(self, new_features: np.ndarray) -> np.ndarray:
        """Coordinates [M, 2] for new vectors in this map's frame (existing points do not move).

        t-SNE: openTSNE optimises only the new points against the fixed reference map,
        attracted by their nearest reference neighbours in feature space.
        """
        x = np.atleast_2d(np.asarray(new_features, dtype=np.float64))
        if self.method == "pca":
            return self._fitted.transform(x)
        # openTSNE re-centres the reference embedding in place; give it a private copy
        # of our (already centred) coordinates so the map shared by sessions never moves.
        ref = openTSNE.TSNEEmbedding(
            self.coords,
            self._fitted.affinities,
            random_state=self._fitted.random_state,
            **self._fitted.gradient_descent_params,
        )
        # The FFT interpolation grid of the reference map is fixed: reuse the one computed
        # at fit time instead of redoing its FFTs (most of the time of placing one point).
        for name in _GRID:
            setattr(ref, name, getattr(self._fitted, name))
        with _transform_lock:
            return np.asarray(ref.transform(x), dtype=np.float64)


# Seconds per point of t-SNE maps, for estimates before one is computed: the last large map
# made in this process, else the measured default: 10,000 Fashion-MNIST test points took
# 60 CPU-s (221 s of wall time with a load of 7 on the 2-core development machine, Nov 2026).
TSNE_SECONDS_PER_POINT = 0.006
# Feature vectors of the Fashion CNN come first: 10,000 test images took 3.7 CPU-s (6 s of
# wall time on the same busy machine).
FEATURE_SECONDS_PER_IMAGE = 0.0005
_tsne_pace: list[float] = []


def estimate_seconds(n: int, method: str) -> float:
    """Expected time to map n Fashion-MNIST images from scratch: their features, then the map
    (PCA is near-instant; t-SNE grows about linearly with n with FFT gradients)."""
    features_s = n * FEATURE_SECONDS_PER_IMAGE
    if method == "pca":
        return features_s + 1e-5 * n
    return features_s + n * (_tsne_pace[-1] if _tsne_pace else TSNE_SECONDS_PER_POINT)


def max_perplexity(n: int) -> float:
    """The largest perplexity openTSNE accepts for n points: it needs n > 3 * perplexity."""
    return (n - 1) / 3


def tsne_map(
    features: np.ndarray,
    perplexity: float = 30,
    seed: int = 0,
    progress: Progress | None = None,
) -> Map:
    """t-SNE map with openTSNE: FFT-interpolated gradients (near-linear in N) for large sets.

    FFT has a fixed cost per iteration that dominates for a class's few hundred photos,
    where Barnes-Hut is many times faster; the switch is at openTSNE's own threshold.
    Same schedule as openTSNE.TSNE.fit (250 early-exaggeration iterations, then 500),
    run phase by phase so progress can be reported. Perplexity is capped below N/3,
    which openTSNE needs for small collections.
    """
    x = np.asarray(features, dtype=np.float64)
    n = len(x)
    if n < 4:
        raise ValueError("t-SNE needs at least 4 points")
    perplexity = float(min(perplexity, max_perplexity(n)))
    started = time.perf_counter()
    total, every = 800, 25  # 50 steps for affinities + initialisation, then 750 iterations
    if progress:
        progress(0, total)
    gradient = "fft" if n >= FFT_FROM else "bh"
    tsne = openTSNE.TSNE(perplexity=perplexity, negative_gradient_method=gradient, n_jobs=N_JOBS, random_state=seed)
    emb = tsne.prepare_initial(x)
    offset = 50
    if progress:
        progress(offset, total)

    def phase(start: int) -> Callable[[int, float, np.ndarray], bool]:
        def report(iteration: int, error: float, embedding: np.ndarray) -> bool:
            if progress:
                progress(start + iteration, total)
            return False

        return report

    emb.optimize(
        tsne.early_exaggeration_iter,
        exaggeration=tsne.early_exaggeration,
        momentum=tsne.initial_momentum,
        inplace=True,
        callbacks=phase(offset),
        callbacks_every_iters=every,
    )
    emb.optimize(
        tsne.n_iter,
        exaggeration=tsne.exaggeration,
        momentum=tsne.final_momentum,
        inplace=True,
        callbacks=phase(offset + tsne.early_exaggeration_iter),
        callbacks_every_iters=every,
    )
    if gradient == "fft":  # the regime of the test-set map; small maps are mostly fixed costs
        _tsne_pace[:] = [(time.perf_counter() - started) / n]
    emb -= (emb.max(axis=0) + emb.min(axis=0)) / 2  # the frame openTSNE's transform works in
    if gradient == "fft":
        emb.prepare_interpolation_grid()
    return Map(np.array(emb, dtype=np.float64), "tsne", {"perplexity": perplexity, "seed": seed}, None, emb)


def pca_map(features: np.ndarray) -> Map:
    """The two directions of largest variance: a linear, exactly reproducible map."""
    x = np.asarray(features, dtype=np.float64)
    pca = PCA(n_components=2, svd_solver="full").fit(x)
    ratio = tuple(float(r) for r in pca.explained_variance_ratio_)
    return Map(pca.transform(x), "pca", {}, ratio, pca)


def distances(query: np.ndarray, features: np.ndarray, metric: str) -> np.ndarray:
    """Distances [Q, N] in float64: l1 = sum |a-b|, l2 = Euclidean, cosine = 1 - cos(a, b).

    A zero vector (possible after a ReLU) has cosine distance 1 to everything.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {METRICS}")
    q = torch.from_numpy(np.atleast_2d(np.asarray(query, dtype=np.float64)))
    f = torch.from_numpy(np.asarray(features, dtype=np.float64))
    if metric == "cosine":
        # 1 - cos(a, b) = |a/|a| - b/|b||^2 / 2: unlike 1 - dot product, exactly 0 for an image and its copy
        # (the page printed "d=2.22e-16") and accurate for close pairs, where 1 - cos cancels digits.
        qnorm, fnorm = q.norm(dim=1, keepdim=True), f.norm(dim=1, keepdim=True)
        tiny = torch.finfo(torch.float64).tiny
        d = torch.cdist(
            q / qnorm.clamp_min(tiny), f / fnorm.clamp_min(tiny), compute_mode="donot_use_mm_for_euclid_dist"
        )
        d = d**2 / 2
        d[(qnorm == 0).squeeze(1)] = 1.0
        d[:, (fnorm == 0).squeeze(1)] = 1.0
        return d.numpy()
    p = 1.0 if metric == "l1" else 2.0
    return torch.cdist(q, f, p=p, compute_mode="donot_use_mm_for_euclid_dist").numpy()


def nearest(
    query: np.ndarray,
    features: np.ndarray,
    k: int,
    metric: str = "l2",
    exclude: int | Sequence[int] | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The k closest rows of `features` to each query: (indices, distances), closest first.

    query [D] gives [k] results, query [Q, D] gives [Q, k]. Ties go to the lower index.
    exclude: an index to leave out (e.g. the query's own row), or one per query.
    Exact brute force: 10k x 4096 is milliseconds, and exactness is what students compare.
    """
    single = np.ndim(query) == 1
    d = distances(query, features, metric)
    if exclude is not None:
        rows = np.arange(len(d))
        d[rows, np.broadcast_to(np.asarray(exclude), rows.shape)] = np.inf
    k = min(k, d.shape[1] - (exclude is not None))
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    dist = np.take_along_axis(d, idx, axis=1)
    return (idx[0], dist[0]) if single else (idx, dist)


# --- stored maps: the Fashion-MNIST test set, a teacher's collection --------------------------------


def _spec(method: str, params: dict[str, Any], data: str) -> dict[str, Any]:
    return {
        "version": _STORE_VERSION,
        "method": method,
        "params": params,
        "data": data,
        "openTSNE": openTSNE.__version__,
    }


def is_stored(model: LoadedModel, method: str, params: dict[str, Any] | None = None) -> bool:
    """Whether fashion_test_map(model, method, params) will only read a file (no waiting)."""
    return store.has("map", model, **_spec(method, dict(params or {}), FASHION_TEST))


def map_params(method: str, perplexity: float = DEFAULT_PERPLEXITY) -> dict[str, Any]:
    """The parameters a stored map is keyed by, spelled one way (30 and 30.0 must not be two maps)."""
    return {"perplexity": float(perplexity)} if method == "tsne" else {}


def fashion_test_map(
    model: LoadedModel,
    method: str = "tsne",
    params: dict[str, Any] | None = None,
    progress: Progress | None = None,
    keep: bool = True,
) -> tuple[Map, np.ndarray, np.ndarray]:
    """(map, labels [N], features [N, D]) of the 10,000 Fashion-MNIST test images.

    Computed once per (weights, method, params) and kept in the store, so every later
    call, from any session or process, only reads a file. Only arrays we computed from
    the public test set are stored. keep=False never writes (for a network a user
    trained in their session: its maps would only fill the disk).
    """
    if method not in ("tsne", "pca"):
        raise ValueError(f"unknown map method {method!r}; choose 'tsne' or 'pca'")
    params = dict(params or {})

    def compute() -> tuple[Map, np.ndarray, np.ndarray]:
        images, labels = load_fashion_mnist("test")
        n = len(images)
        # progress: features count as n steps, the map as 2n (t-SNE dominates the time)
        # fp32 whatever the CPU: the stored map then means the same on every machine, so one
        # built with the Docker image or by `make warm` is found on any server (10k Fashion
        # images take about 2 s; t-SNE dominates)
        report = (lambda d, t: progress(d, 3 * n)) if progress else None
        feats = features(model, images, progress=report, precision="fp32")
        if method == "tsne":
            report = (lambda d, t: progress(n + 2 * n * d // t, 3 * n)) if progress else None
            fmap = tsne_map(feats, progress=report, **params)
        else:
            fmap = pca_map(feats, **params)
        if progress:
            progress(3 * n, 3 * n)
        return fmap, labels.numpy(), feats

    return store.kept("map", model, compute, keep=keep, **_spec(method, params, FASHION_TEST))


def kept_collection_vectors(
    model: LoadedModel, images: Sequence[Image.Image], keep_as: str | None, progress: Progress | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`collection_vectors`, kept in the store under the data set's name `keep_as` (a teacher's
    collection, named with its content); None computes without keeping (a student's upload)."""
    return store.kept(
        "vectors",
        model,
        lambda: collection_vectors(model, images, progress),
        keep=keep_as is not None,
        version=_STORE_VERSION,
        data=keep_as,
    )


def collection_map(
    model: LoadedModel,
    feats: np.ndarray,
    method: str,
    perplexity: float = DEFAULT_PERPLEXITY,
    progress: Progress | None = None,
    keep_as: str | None = None,
) -> Map:
    """A t-SNE or PCA map of a collection's features (model's `kept_collection_vectors`), kept as they are."""
    if method not in ("tsne", "pca"):
        raise ValueError(f"unknown map method {method!r}; choose 'tsne' or 'pca'")

    def compute() -> Map:
        return tsne_map(feats, perplexity, progress=progress) if method == "tsne" else pca_map(feats)

    return store.kept(
        "map", model, compute, keep=keep_as is not None, **_spec(method, map_params(method, perplexity), keep_as)
    )
