"""Adebayo et al.'s sanity check (2018): do the maps change when the network's weights are destroyed?

A map that explains a network must depend on what the network learned. The check
re-initialises the network's weights in cascade, from the top (the class scores)
down, one block at a time, and recomputes each map after every step. Maps that stay
almost the same while the network is turned into noise cannot be explaining it:
they mostly reflect the input image and the architecture. In the paper, guided
backpropagation fails the check (it keeps drawing the image's edges), while plain
gradients and Grad-CAM pass it (they decay towards noise).

Everything happens on a private deep copy of the network, taken under `model.lock`
(so no other analysis's temporary hook is copied); the shared module is only read.
Each stage re-initialises one more group of parameterised layers with the layers' own
default initialisation (`reset_parameters`), from a fixed seed, so a run is reproducible.
Similarity is Spearman's rank correlation of each map with the original network's
map for the same class (the originally predicted one), on absolute values as in the paper.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import threading
import time
import weakref
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from app.analyses import attribution as attr
from app.networks.loaded import LoadedModel
from app.serving import worker
from app.serving.progress import Progress

METHODS = ("gradient", "guided backprop", "Grad-CAM")
# A whole cascade against (stages + 1) x one timed stage (the difference: copying the network and
# building its graphs): measured 0.75x on EfficientNet-Lite0 and 1.3x on VGG-16, with the shared
# 2-core machine at load 8-10, so only a rough figure.
COPY_OVERHEAD = 1.2
_PARAMETERISED = ("conv", "fc", "bn")


@dataclass(frozen=True)
class Cascade:
    """The result of one cascading randomisation.

    stages[0] is "original"; stages[i] names the group re-initialised at step i (on top of
    all earlier ones). maps[method] is [stages, H, W] (absolute values, float32);
    correlations[method] is [stages], 1.0 at stage 0 by definition.
    """

    target: int
    stages: tuple[str, ...]
    maps: dict[str, np.ndarray]
    correlations: dict[str, np.ndarray]


def _group_key(name: str) -> str:
    """The block a layer belongs to: the first part of a module path (`stage6.block2.project_conv`
    -> stage6), or a VGG-style name without its index (`conv5_3` -> conv5, `fc7` -> fc7)."""
    return name.split(".")[0] if "." in name else re.sub(r"_\d+$", "", name)


def layer_groups(model: LoadedModel) -> list[tuple[str, tuple[str, ...]]]:
    """Parameterised layers grouped by block, top (output side) first: [(group name, module paths)].

    A batch-norm layer joins the group of the layer before it, so a convolution and its
    normalisation are always re-initialised together.
    """
    modules = dict(model.module.named_modules())
    groups: list[tuple[str, list[str]]] = []
    seen: set[str] = set()
    for row in model.layers:
        m = modules.get(row.path)
        if row.kind not in _PARAMETERISED or m is None or row.path in seen:
            continue
        if not any(True for _ in m.parameters(recurse=False)):
            continue
        seen.add(row.path)
        key = _group_key(row.name)
        if groups and (row.kind == "bn" or groups[-1][0] == key):
            groups[-1][1].append(row.path)
        else:
            groups.append((key, [row.path]))
    return [(name, tuple(paths)) for name, paths in reversed(groups)]


def private_copy(model: LoadedModel) -> LoadedModel:
    """A LoadedModel over a deep copy of the network: same layer table, own lock and own graph cache.

    The copy is taken under the shared model's lock, when no analysis has a hook on it.
    """
    with model.lock:
        module = copy.deepcopy(model.module)
    return dataclasses.replace(model, module=module, lock=threading.RLock())


def _reinitialise(module: nn.Module, paths: tuple[str, ...], seed: int) -> None:
    """Reset the layers at `paths` to their default random initialisation (batch norm: identity
    statistics and affine), from `seed`, without touching the global random state."""
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for path in paths:
            module.get_submodule(path).reset_parameters()


def _maps(model: LoadedModel, x: torch.Tensor, target: int, layer: str) -> dict[str, np.ndarray]:
    maps = attr.class_maps(model, x, target, layer)
    return {
        "gradient": maps["saliency"],  # already |gradient|, max over colour channels
        "guided backprop": attr.magnitude(maps["guided backprop"]),
        "Grad-CAM": maps["Grad-CAM"],
    }


def similarity(original: np.ndarray, other: np.ndarray) -> float:
    """Spearman rank correlation of two maps; 0 when either is constant (e.g. a Grad-CAM that the
    randomised network made all zero): nothing of the original ranking is left."""
    if np.ptp(original) == 0 or np.ptp(other) == 0:
        return 0.0
    return attr.rank_correlation(original, other)


def cascade(
    model: LoadedModel,
    x: torch.Tensor,
    target: int | None = None,
    stages: int | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    *,
    private: bool = False,
) -> Cascade:
    """Cascading randomisation of a copy of `model`, top first, with every method's map at each stage.

    target: the class to explain (default: the original network's prediction, kept for all stages).
    stages: how many groups to re-initialise (default: all, see `layer_groups`).
    progress(done, total) after each stage; it may raise Cancelled, which leaves nothing behind
    (the copy is simply dropped). private: `model` is already this run's own copy (in a worker
    process), so it is randomised in place instead of copied again.
    """
    groups = layer_groups(model)
    groups = groups[: len(groups) if stages is None else max(0, min(stages, len(groups)))]
    if target is None:
        target = int(model.logits(x)[0].argmax())
    layer = attr.default_cam_layer(model)
    total = len(groups) + 1
    net = model if private else private_copy(model)
    first = _maps(net, x, target, layer)
    collected = {m: [first[m]] for m in METHODS}
    if progress is not None:
        progress(1, total)
    for i, (_, paths) in enumerate(groups, start=1):
        _reinitialise(net.module, paths, seed + i)
        maps = _maps(net, x, target, layer)
        for m in METHODS:
            collected[m].append(maps[m])
        if progress is not None:
            progress(i + 1, total)
    stacked = {m: np.stack(v).astype(np.float32) for m, v in collected.items()}
    correlations = {m: np.array([similarity(v[0], s) for s in v], dtype=np.float32) for m, v in stacked.items()}
    return Cascade(target, ("original", *(name for name, _ in groups)), stacked, correlations)


def cascade_in_worker(
    model: LoadedModel,
    x: torch.Tensor,
    target: int | None = None,
    stages: int | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> Cascade:
    """`cascade` computed in a worker process (app.serving.worker) on a pickled copy of the network:
    the same result, but out of the server's way. In a server thread it ran many times slower than
    alone, its hundreds of small operations per pass waiting for the interpreter lock that the
    server and every other session share (benchmarks/sanity_server.py)."""
    kwargs = dict(model=model, x=x.detach().cpu(), target=target, stages=stages, seed=seed, private=True)
    return worker.call("app.analyses.sanity:cascade", kwargs, progress, lock=model.lock)


# Seconds of one stage's maps (two gradient passes) per model, timed on first use.
_stage_seconds: weakref.WeakKeyDictionary[LoadedModel, float] = weakref.WeakKeyDictionary()


def estimate_seconds(model: LoadedModel, stages: int | None = None) -> float:
    """Expected time of `cascade`: (stages + 1) x one stage's maps, plus copying the network.

    A stage is timed once per model on a blank input, after an untimed run that builds the
    graphs, so the first page visit does not mistake building them for the work itself.
    """
    if model not in _stage_seconds:
        x = torch.zeros(1, model.channels, model.input_size, model.input_size)
        layer = attr.default_cam_layer(model)
        _maps(model, x, 0, layer)
        start = time.perf_counter()
        _maps(model, x, 0, layer)
        _stage_seconds[model] = time.perf_counter() - start
    n = len(layer_groups(model)) if stages is None else stages
    return (n + 1) * _stage_seconds[model] * COPY_OVERHEAD
